#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Tables and chart for bench/run (Python standard library only).

    report.py --anchors FILE --extras FILE --json OUT [--svg OUT]

--anchors: the anchor runner's JSON lines (its median runs, msgport-glib's
included); --extras: every raw run of msgport-bench's memory, idle-ports,
flow and large modes, and of its W-small rows with the message function and
with ::message signal handlers, one after the other ("handler": "function"
or "signal"). Writes all the figures as JSON lines to --json (the runner's lines,
then the extras' medians and the idle-ports summaries), prints markdown
tables (msgport-glib / anchor ratios, the issue's targets, the extra figures)
and draws the comparison as an SVG chart.
"""

import argparse
import json
import statistics
import sys
from html import escape

PROJECT = 'msgport-glib'
TOPOLOGIES = ['same-thread', 'cross-thread', 'cross-process']
ROWS = [('W-small', 'throughput'), ('W-1k', 'throughput'),
        ('W-1m', 'throughput'), ('W-small', 'latency')]
# The floor of each topology (anchors README).
FLOORS = {'same-thread': 'glib-queue', 'cross-thread': 'glib-queue',
          'cross-process': 'socket-raw'}
NODE = {'same-thread': 'node-messagechannel', 'cross-thread': 'node-messagechannel',
        'cross-process': 'node-ipc-advanced'}
# The idle ports of bench/run's idle-ports runs: started in process; across
# processes connected, that many in each process.
IDLE_PORTS = {'same-thread': 10000, 'cross-thread': 10000, 'cross-process': 100}

# The issue's targets: (topology, workload, metric, anchor, bound, what). For throughput the bound is the least
# msgs/s ratio msgport-glib / anchor; for latency the greatest p50 ratio.
TARGETS = [
    ('same-thread', 'W-small', 'throughput', 'glib-queue', 0.9, '>= 90% of the glib-queue floor'),
    ('same-thread', 'W-1k', 'throughput', 'node-messagechannel', 3, '>= 3x Node MessageChannel'),
    ('same-thread', 'W-1m', 'throughput', 'node-messagechannel', 3, '>= 3x Node MessageChannel'),
    ('cross-thread', 'W-small', 'throughput', 'glib-queue', 0.9, '>= 90% of the glib-queue floor'),
    ('cross-thread', 'W-small', 'throughput', 'node-messagechannel', 1, 'above Node across a Worker'),
    ('cross-thread', 'W-1k', 'throughput', 'node-messagechannel', 3, '>= 3x Node'),
    ('cross-thread', 'W-1m', 'throughput', 'node-messagechannel', 5, '>= 5x Node'),
    ('cross-thread', 'W-small', 'latency', 'glib-queue', 1.2, 'p50 <= 1.2x the glib-queue floor'),
    ('cross-thread', 'W-small', 'latency', 'node-messagechannel', 0.5, "p50 <= half of Node's"),
    ('cross-process', 'W-small', 'throughput', 'gdbus-p2p', 10, '>= 10x GDBus peer-to-peer'),
    ('cross-process', 'W-small', 'throughput', 'node-ipc-advanced', 3, '>= 3x Node IPC (advanced)'),
    ('cross-process', 'W-small', 'throughput', 'socket-gvariant', 1, '>= 100% of the socket-gvariant floor'),
    ('cross-process', 'W-small', 'latency', 'socket-gvariant', 1.3, 'p50 <= 1.3x the socket-gvariant floor'),
    ('cross-process', 'W-1m', 'throughput', 'socket-gvariant', 1, '>= 100% of the socket-gvariant floor (MB/s)'),
]
MEMORY_TARGETS = {'unstarted': 1024, 'started': 2048, 'used': 2048}
# After use RSS keeps what the messages freed (glibc's heap): the heap in
# use is what the channels hold.
MEMORY_FIGURE = {'used': 'heap_bytes_per_channel'}
KEPT_TARGET = 90

COLOURS = {PROJECT: '#d62728', 'glib-queue': '#1f77b4', 'glib-idle': '#9ecae1',
           'glib-direct': '#6baed6', 'node-messagechannel': '#2ca02c',
           'socket-raw': '#1f77b4', 'socket-gvariant': '#6baed6', 'gdbus-p2p': '#9467bd',
           'node-ipc-advanced': '#2ca02c', 'node-ipc-json': '#98df8a'}


def read_lines(path):
    lines = []
    with open(path) as f:
        for text in f:
            text = text.strip()
            if text.startswith('{'):
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    print(f'report: skipping a bad line in {path}: {text}', file=sys.stderr)
    return lines


def ok(line):
    return line is not None and 'error' not in line


def value(line):
    """The figure that is compared: msgs/s, or the p50 in µs."""
    return line['p50_us'] if line['metric'] == 'latency' else line['msgs_per_s']


def ratio(ours, theirs):
    """msgport-glib / anchor: msgs/s for throughput, p50 for latency."""
    if not ok(ours) or not ok(theirs) or value(theirs) == 0:
        return None
    return value(ours) / value(theirs)


def speed(line, floor):
    """How fast relative to the floor; above 1 is faster, for both metrics."""
    if not ok(line) or not ok(floor) or value(line) == 0:
        return None
    if line['metric'] == 'latency':
        return value(floor) / value(line)
    return value(line) / value(floor)


def show(line):
    if line is None:
        return '—'
    if 'error' in line:
        return 'ERROR'
    if line['metric'] == 'latency':
        return f"p50 {line['p50_us']:.1f} µs"
    rate = line['msgs_per_s']
    return f'{rate / 1e6:.2f} M/s' if rate >= 1e6 else f'{rate / 1e3:.1f} k/s'


def median_run(runs, key):
    """The run with the median @key, with the run count and spread added."""
    ordered = sorted(runs, key=lambda run: run[key])
    line = dict(ordered[(len(ordered) - 1) // 2])
    mid = line[key]
    line['runs'] = len(runs)
    line['spread_pct'] = round((ordered[-1][key] - ordered[0][key]) / mid * 100, 1) if mid else 0
    return line


def summarize_extras(raw):
    """Median lines of the memory and idle-ports runs, then one summary per
    topology: idle-ports throughput with the topology's IDLE_PORTS idle ports
    over alone, as the median of the ratios of runs made one after the other."""
    groups = {}
    for line in raw:
        if line.get('metric') in ('flow', 'large'):
            continue  # print_flow(), summarize_large(), errors included
        elif not ok(line):
            groups.setdefault(('error', len(groups)), []).append(line)
        elif line.get('handler'):
            continue  # summarize_handlers()
        elif line['metric'] == 'memory':
            groups.setdefault(('memory', line['state']), []).append(line)
        elif line['metric'] == 'idle-ports':
            groups.setdefault(('idle-ports', line['topology'], line['idle_ports']), []).append(line)
    medians = []
    for key, runs in groups.items():
        if key[0] == 'error':
            medians += runs
        else:
            medians.append(median_run(runs, 'rss_bytes_per_channel' if key[0] == 'memory'
                                      else 'msgs_per_s'))

    summaries = []
    for topology in TOPOLOGIES:
        alone = groups.get(('idle-ports', topology, 0), [])
        busy = groups.get(('idle-ports', topology, IDLE_PORTS[topology]), [])
        pairs = list(zip(alone, busy))
        if not pairs:
            continue
        summaries.append({
            'anchor': PROJECT, 'topology': topology, 'workload': 'W-small',
            'metric': 'idle-ports-kept', 'idle_ports': IDLE_PORTS[topology],
            'alone_msgs_per_s': round(statistics.median(a['msgs_per_s'] for a in alone)),
            'with_idle_msgs_per_s': round(statistics.median(b['msgs_per_s'] for b in busy)),
            'kept_pct': round(statistics.median(b['msgs_per_s'] / a['msgs_per_s'] * 100
                                                for a, b in pairs), 1),
            'runs': len(pairs),
        })
    return medians, summaries


def idle_what(topology):
    """The idle ports of @topology's idle-ports runs, in words."""
    if topology == 'cross-process':
        return f'{IDLE_PORTS[topology]} idle connected ports in each process'
    return f'{IDLE_PORTS[topology]} idle ports'


def find(lines, anchor, topology, workload, metric):
    for line in lines:
        if (line.get('anchor') == anchor and line.get('topology') == topology
                and line.get('workload') == workload and line.get('metric') == metric):
            return line
    return None


def print_ratio_tables(lines):
    print('msgport-glib / anchor, from the same run: msgs/s for throughput (above 1:')
    print('msgport-glib is faster), p50 for latency (below 1: msgport-glib is faster).')
    for topology in TOPOLOGIES:
        ours = [find(lines, PROJECT, topology, w, m) for w, m in ROWS]
        if not any(ok(line) for line in ours):
            continue
        anchors = []
        for line in lines:
            name = line.get('anchor')
            if line.get('topology') == topology and name != PROJECT and name not in anchors:
                anchors.append(name)
        print()
        print(f'| {topology} | msgport-glib | ' + ' | '.join(anchors) + ' |')
        print('| --- | --- |' + ' --- |' * len(anchors))
        for (workload, metric), line in zip(ROWS, ours):
            cells = []
            for anchor in anchors:
                r = ratio(line, find(lines, anchor, topology, workload, metric))
                cells.append('—' if r is None else f'{r:.2f}')
            print(f'| {workload} {metric} | {show(line)} | ' + ' | '.join(cells) + ' |')


def evaluate_targets(lines, medians, summaries):
    """(what, measured, met) for every target; met is None when unmeasured."""
    results = []
    for topology, workload, metric, anchor, bound, what in TARGETS:
        r = ratio(find(lines, PROJECT, topology, workload, metric),
                  find(lines, anchor, topology, workload, metric))
        met = None if r is None else (r <= bound if metric == 'latency' else r >= bound)
        results.append((f'{topology} {workload} {metric}: {what}',
                        '—' if r is None else f'{r:.2f}x {anchor}', met))
    for state, bound in MEMORY_TARGETS.items():
        line = next((m for m in medians if m.get('metric') == 'memory' and m.get('state') == state), None)
        per = line[MEMORY_FIGURE.get(state, 'rss_bytes_per_channel')] if ok(line) else None
        results.append((f'memory: <= {bound} B per {state} channel'
                        + (' (heap)' if state in MEMORY_FIGURE else ''),
                        '—' if per is None else f'{per:.0f} B', None if per is None else per <= bound))
    for topology in TOPOLOGIES:
        line = next((s for s in summaries if s['topology'] == topology), None)
        kept = line['kept_pct'] if line else None
        results.append((f'{topology} scale: >= {KEPT_TARGET}% of the throughput alone '
                        f'among {idle_what(topology)}',
                        '—' if kept is None else f'{kept:.1f}%',
                        None if kept is None else kept >= KEPT_TARGET))
    return results


def print_targets(results):
    print()
    print("The issue's targets:")
    print()
    print('| target | measured | met |')
    print('| --- | --- | --- |')
    for what, measured, met in results:
        print(f"| {what} | {measured} | {'—' if met is None else 'yes' if met else 'NO'} |")


def summarize_handlers(raw):
    """::message against the message function, per W-small row: the median of
    the ratios of runs made one after the other (signal / function: msgs/s
    for throughput, p50 for latency)."""
    runs = {}
    for line in raw:
        if ok(line) and line.get('handler') in ('function', 'signal'):
            key = (line['topology'], line['workload'], line['metric'])
            runs.setdefault(key, {}).setdefault(line['handler'], []).append(line)
    summaries = []
    for (topology, workload, metric), by in runs.items():
        pairs = list(zip(by.get('function', []), by.get('signal', [])))
        if not pairs:
            continue
        summaries.append({
            'anchor': PROJECT, 'topology': topology, 'workload': workload,
            'metric': 'signal-vs-function', 'of': metric,
            'function': median_run([f for f, _ in pairs], 'p50_us' if metric == 'latency' else 'msgs_per_s'),
            'signal': median_run([s for _, s in pairs], 'p50_us' if metric == 'latency' else 'msgs_per_s'),
            'ratio': round(statistics.median(value(s) / value(f) for f, s in pairs), 3),
            'runs': len(pairs),
        })
    return summaries


def evaluate_signal_targets(lines, handlers):
    """The W-small targets again with ::message handlers: the message
    function's ratio to the anchor (from the anchor run) times the paired
    ::message / function ratio."""
    results = []
    for topology, workload, metric, anchor, bound, what in TARGETS:
        h = next((h for h in handlers if h['topology'] == topology and h['workload'] == workload
                  and h['of'] == metric), None)
        if h is None:
            continue
        r = ratio(find(lines, PROJECT, topology, workload, metric),
                  find(lines, anchor, topology, workload, metric))
        r = None if r is None else r * h['ratio']
        met = None if r is None else (r <= bound if metric == 'latency' else r >= bound)
        results.append((f'{topology} {workload} {metric} with ::message: {what}',
                        '—' if r is None else f'{r:.2f}x {anchor}', met))
    return results


def print_handlers(handlers):
    if not handlers:
        return
    print()
    print('W-small with ::message signal handlers (what bindings use) against the message')
    print('function (msg_port_main_set_message_func(), the fast path for C) that the tables')
    print('above measure, from runs made one after the other:')
    print()
    print('| row | message function | ::message | ::message / function (median of pairs) | runs |')
    print('| --- | --- | --- | --- | --- |')
    for h in handlers:
        print(f"| {h['topology']} {h['workload']} {h['of']} | {show(h['function'])} "
              f"| {show(h['signal'])} | {h['ratio']:.2f} | {h['runs']} |")


def print_extras(medians, summaries):
    print()
    print('Memory per channel (RSS delta / channels; malloc heap in use delta / channels):')
    print()
    print('| channels | state | RSS per channel | heap per channel | spread |')
    print('| --- | --- | --- | --- | --- |')
    for line in medians:
        if line.get('metric') == 'memory' and ok(line):
            print(f"| {line['channels']} | {line['state']} | {line['rss_bytes_per_channel']:.0f} B "
                  f"| {line['heap_bytes_per_channel']:.0f} B | {line['spread_pct']}% |")
    print()
    print('One busy channel (W-small throughput) alone and with idle started ports on the')
    print("receiving end's GMainContext; across processes, idle connected ports in each process,")
    print("on the GMainContext of that process's end:")
    print()
    print('| topology | idle ports | alone | with idle ports | kept (median of paired runs) | runs |')
    print('| --- | --- | --- | --- | --- | --- |')
    for line in summaries:
        print(f"| {line['topology']} | {line['idle_ports']} | {line['alone_msgs_per_s'] / 1e3:.1f} k/s "
              f"| {line['with_idle_msgs_per_s'] / 1e3:.1f} k/s | {line['kept_pct']:.1f}% | {line['runs']} |")
    for line in medians:
        if not ok(line):
            print(f"ERROR in {line.get('metric')}: {line.get('error')}")


# What the transport copies of a message's data, per carrier (docs/performance.md,
# "Copies per message"); the sender's build of the message is not counted.
COPIES = {
    'inline': ('2', 'into the socket and out of it, straight into the message'),
    'memfd': ('1', "into a sealed memfd; the receiver maps it"),
    'fd': ('0', "the sender's own memfd is mapped by the receiver"),
    'shared': ('0', "one of a few memfds of the sender's, reused: the receiver maps it and gives it back"),
}


def flow_lines(raw):
    return [line for line in raw if line.get('metric') == 'flow']


def print_flow(raw):
    """The flow-control runs (issue 17): one line each."""
    lines = flow_lines(raw)
    if not lines:
        return
    print()
    print('Flow control: a producer posting 1 KiB messages, each with its own data, to a')
    print('consumer that takes CONSUMER_NS a message; paced, it posts while its port is')
    print('writable (high-water mark) and then awaits wait_writable_async(); unpaced, it posts')
    print('them all at once (and the consumer then drains the rest at once: the backlog is')
    print('at its most). Max RSS from getrusage() in each process; "most buffered" is')
    print("buffered-amount, sampled after each run of posts; cross-thread is one process.")
    print()
    print('| topology | mode | messages | consumer / message | post cost | consumer / post '
          '| most buffered | consumer\'s most queued | max RSS producer | max RSS consumer | seconds |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for line in lines:
        if not ok(line):
            print(f"| {line.get('args', '?')} | ERROR: {line.get('error')} |" + ' |' * 9)
            continue
        post = line['post_ns_per_msg']
        factor = line['consumer_ns'] / post if post else float('inf')
        print(f"| {line['topology']} | {line['mode']}"
              + (f" (mark {line['high_water_mark'] // 1024} KiB)" if line['high_water_mark'] else '')
              + f" | {line['n']:,} | {line['consumer_ns'] / 1e3:.0f} µs | {post / 1e3:.2f} µs "
              f"| {factor:.0f}x{'' if factor >= 100 else ' (< 100x)'} "
              f"| {line['max_buffered_bytes'] / 2**20:.2f} MiB | {line['consumer_max_queued']:,} "
              f"| {line['max_rss_kb'] / 1024:.1f} MiB "
              f"| {line['consumer_max_rss_kb'] / 1024:.1f} MiB"
              + (' (same)' if line['topology'] == 'cross-thread' else '')
              + f" | {line['seconds']:.1f} |")


def summarize_large(raw):
    """The median run (MB/s) of each large workload and carrier, and the
    first failure of each command."""
    groups, failed = {}, {}
    for line in raw:
        if line.get('metric') != 'large':
            continue
        if ok(line):
            groups.setdefault((line['workload'], line['via']), []).append(line)
        else:
            failed.setdefault(line.get('args'), line)
    return [median_run(runs, 'mb_per_s') for runs in groups.values()] + list(failed.values())


def print_large(lines, large):
    """Issue 18: W-1m and 64 MiB across processes in MB/s, beside the
    socket-raw floor's W-1m (the anchors' largest workload)."""
    if not large:
        return
    floor = find(lines, 'socket-raw', 'cross-process', 'W-1m', 'throughput')
    ours = find(lines, PROJECT, 'cross-process', 'W-1m', 'throughput')
    rows = []
    if ok(ours):
        rows.append(('W-1m (anchor runner)', 'inline', ours['mb_per_s'], ours.get('spread_pct'),
                     ours.get('runs')))
    for line in sorted(filter(ok, large), key=lambda l: (l['message_bytes'], l['via'])):
        rows.append((line['workload'], line['via'], line['mb_per_s'], line['spread_pct'],
                     line['runs']))
    print()
    print('Large messages across processes, MB/s (10^6 bytes/s) against the socket-raw')
    print('floor of the anchors for their largest workload, W-1m (one write() of each 1 MiB')
    print('message, no GVariant, no user-space copy); "copies": what the transport copies of')
    print("a message's data, the sender's build of the message aside:")
    print()
    print('| workload | carrier | copies | MB/s | socket-raw W-1m | / floor | spread | runs |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for workload, via, mb, spread, runs in rows:
        copies = COPIES.get(via, ('?', ''))[0]
        r = f"{mb / floor['mb_per_s']:.2f}" if ok(floor) and floor['mb_per_s'] else '—'
        print(f"| {workload} | {via} | {copies} | {mb:.0f} | "
              + (f"{floor['mb_per_s']:.0f}" if ok(floor) else '—')
              + f" | {r} | {'—' if spread is None else f'{spread}%'} | {runs or '—'} |")
    for line in large:
        if not ok(line):
            print(f"msgport-bench {line.get('args')}: {line.get('error')}")


def write_svg(path, lines, results):
    """Horizontal bars: each anchor's and msgport-glib's speed relative to
    the topology's floor, per workload and metric."""
    bar, gap, left, width = 13, 10, 250, 520
    panels = []
    for topology in TOPOLOGIES:
        if not any(ok(find(lines, PROJECT, topology, w, m)) for w, m in ROWS):
            continue
        groups = []
        for workload, metric in ROWS:
            floor = find(lines, FLOORS[topology], topology, workload, metric)
            bars = []
            for line in lines:
                if (line.get('topology') == topology and line.get('workload') == workload
                        and line.get('metric') == metric):
                    s = speed(line, floor)
                    if s is not None:
                        bars.append((line['anchor'], s, show(line)))
            bars.sort(key=lambda b: (b[0] != PROJECT, b[0]))
            groups.append((f'{workload} {metric}', bars))
        panels.append((topology, groups))

    top_of = []
    y = 70
    for topology, groups in panels:
        top_of.append(y)
        y += 28 + sum(len(bars) * bar + gap for _, bars in groups)
    height = y + 40 + 16 * len(results)
    scale_max = max([2.0] + [s for _, groups in panels for _, bars in groups for _, s, _ in bars])
    scale_max = min(scale_max, 8.0)
    px = lambda s: width * min(s, scale_max) / scale_max

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 190}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">msgport-glib against the anchors</text>',
           '<text x="10" y="40">Speed relative to each topology\'s floor (glib-queue in process, '
           'socket-raw across processes): msgs/s ÷ floor\'s, or floor\'s p50 ÷ p50.</text>',
           '<text x="10" y="55">Longer is faster; the dashed line is the floor. '
           f'Bars are cut at {scale_max:g}.</text>']
    for (topology, groups), y in zip(panels, top_of):
        out.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">{topology}</text>')
        y += 22
        panel_top = y
        for label, bars in groups:
            out.append(f'<text x="10" y="{y + bar - 2}" font-weight="bold">{escape(label)}</text>')
            for anchor, s, text in bars:
                colour = COLOURS.get(anchor, '#7f7f7f')
                weight = ' font-weight="bold"' if anchor == PROJECT else ''
                out.append(f'<text x="{left - 6}" y="{y + bar - 3}" text-anchor="end"{weight}>'
                           f'{escape(anchor)}</text>')
                out.append(f'<rect x="{left}" y="{y + 1}" width="{px(s):.1f}" height="{bar - 2}" '
                           f'fill="{colour}"/>')
                out.append(f'<text x="{left + px(s) + 4:.1f}" y="{y + bar - 3}">'
                           f'{s:.2f} ({escape(text)})</text>')
                y += bar
            y += gap
        out.append(f'<line x1="{left + px(1):.1f}" y1="{panel_top}" x2="{left + px(1):.1f}" '
                   f'y2="{y - gap}" stroke="black" stroke-dasharray="4,3"/>')
    y = height - 30 - 16 * len(results)
    out.append(f'<text x="10" y="{y}" font-size="13" font-weight="bold">Targets</text>')
    for what, measured, met in results:
        y += 16
        mark, colour = ('—', '#7f7f7f') if met is None else ('met', '#2ca02c') if met else ('MISSED', '#d62728')
        out.append(f'<text x="10" y="{y}"><tspan fill="{colour}" font-weight="bold">{mark}</tspan> '
                   f'{escape(what)}: {escape(measured)}</text>')
    out.append('</svg>')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--anchors', required=True)
    parser.add_argument('--extras', required=True)
    parser.add_argument('--json', required=True)
    parser.add_argument('--svg')
    args = parser.parse_args()

    lines = read_lines(args.anchors)
    extras = read_lines(args.extras)
    medians, summaries = summarize_extras(extras)
    handlers = summarize_handlers(extras)
    large = summarize_large(extras)
    with open(args.json, 'w') as f:
        for line in lines + medians + summaries + handlers + flow_lines(extras) + large:
            f.write(json.dumps(line, separators=(',', ':'), ensure_ascii=False) + '\n')

    print_ratio_tables(lines)
    results = evaluate_targets(lines, medians, summaries) + evaluate_signal_targets(lines, handlers)
    print_targets(results)
    print_handlers(handlers)
    print_extras(medians, summaries)
    print_flow(extras)
    print_large(lines, large)
    if args.svg:
        write_svg(args.svg, lines, results)


if __name__ == '__main__':
    main()
