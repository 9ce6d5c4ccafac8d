# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs every code snippet of the README and of the reference manual, as
printed, and prints TAP.

    snippets.py SOURCE_ROOT BUILD_ROOT

A snippet is:
- a fenced block of README.md whose language is c, python or js;
- a <programlisting language="c|python|javascript"> with inline CDATA in
  docs/reference/*.xml (the guides' xi:included examples are run by the
  examples suite);
- a |[<!-- language="C" --> block in a gtk-doc comment of msgport-glib/.

Each is a complete program: C is compiled against the library in the build
tree, Python runs under this interpreter, JavaScript under $MSG_TEST_GJS.
It must exit 0 and print something; an HTML comment right after a README
block, <!-- expect: TEXT -->, or a line "// expect: TEXT" / "# expect:
TEXT" in the snippet itself, names text its output must contain.
"""

import html
import os
import re
import shlex
import subprocess
import sys
import tempfile

LANGUAGES = {'c': 'c', 'python': 'python', 'js': 'js', 'javascript': 'js'}
TIMEOUT_SECONDS = 60


def readme_snippets(root):
    path = os.path.join(root, 'README.md')
    text = open(path, encoding='utf-8').read()
    fence = re.compile(r'^```(\w+)\n(.*?)^```\n(?:\s*<!-- expect: (.*?) -->)?',
                       re.M | re.S)
    for match in fence.finditer(text):
        lang = LANGUAGES.get(match.group(1))
        if lang is not None:
            line = text.count('\n', 0, match.start()) + 1
            yield 'README.md:%d' % line, lang, match.group(2), match.group(3)


def manual_snippets(root):
    folder = os.path.join(root, 'docs', 'reference')
    listing = re.compile(r'<programlisting language="(\w+)"><!\[CDATA\[(.*?)\]\]></programlisting>',
                         re.S)
    for name in sorted(os.listdir(folder)):
        if not name.endswith('.xml'):
            continue
        text = open(os.path.join(folder, name), encoding='utf-8').read()
        for match in listing.finditer(text):
            lang = LANGUAGES.get(match.group(1))
            if lang is not None:
                line = text.count('\n', 0, match.start()) + 1
                yield 'docs/reference/%s:%d' % (name, line), lang, match.group(2), None


def gtkdoc_snippets(root):
    folder = os.path.join(root, 'msgport-glib')
    block = re.compile(r'^ \* \|\[<!-- language="C" -->\n(.*?)^ \* \]\|', re.M | re.S)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(('.c', '.h')):
            continue
        text = open(os.path.join(folder, name), encoding='utf-8').read()
        for match in block.finditer(text):
            body = re.sub(r'^ \*(?: |$)', '', match.group(1), flags=re.M)
            line = text.count('\n', 0, match.start()) + 1
            yield 'msgport-glib/%s:%d' % (name, line), 'c', html.unescape(body), None


def expected_in(code):
    match = re.search(r'^\s*(?://|#) expect: (.*)$', code, re.M)
    return match.group(1) if match else None


def compile_c(source, workdir, build_root, root):
    flags = subprocess.run(['pkg-config', '--cflags', '--libs', 'gio-2.0', 'gio-unix-2.0'],
                           check=True, capture_output=True, text=True).stdout
    lib_dir = os.path.join(build_root, 'msgport-glib')
    exe = os.path.join(workdir, 'snippet')
    argv = [os.environ.get('CC', 'cc'), '-Wall', '-Wextra', '-Werror', '-Wno-unused-parameter',
            '-I', os.path.join(root, 'msgport-glib'), '-I', lib_dir,
            source, '-o', exe, '-L', lib_dir, '-lmsgport-glib-1.0',
            '-Wl,-rpath,' + lib_dir] + shlex.split(flags)
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError('does not compile:\n' + result.stderr)
    return [exe]


def run_snippet(lang, code, workdir, build_root, root):
    suffix = {'c': '.c', 'python': '.py', 'js': '.js'}[lang]
    source = os.path.join(workdir, 'snippet' + suffix)
    with open(source, 'w', encoding='utf-8') as f:
        f.write(code)
    if lang == 'c':
        argv = compile_c(source, workdir, build_root, root)
    elif lang == 'python':
        argv = [sys.executable, source]
    else:
        gjs = os.environ.get('MSG_TEST_GJS')
        if not gjs:
            return None  # skipped
        argv = [gjs, '-m', source]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=workdir,
                            stdin=subprocess.DEVNULL, timeout=TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise RuntimeError('exited with %d:\n%s%s' % (result.returncode, result.stdout,
                                                        result.stderr))
    if not result.stdout.strip():
        raise RuntimeError('printed nothing (a snippet must show what it does)')
    return result.stdout


def main(argv):
    root, build_root = argv[1], argv[2]
    snippets = (list(readme_snippets(root)) + list(manual_snippets(root)) +
                list(gtkdoc_snippets(root)))
    print('1..%d' % len(snippets))
    failed = 0
    for i, (where, lang, code, expect) in enumerate(snippets, 1):
        expect = expect or expected_in(code)
        with tempfile.TemporaryDirectory(prefix='msg-snippet-') as workdir:
            try:
                output = run_snippet(lang, code, workdir, build_root, root)
                if output is None:
                    print('ok %d %s (%s) # SKIP needs gjs' % (i, where, lang))
                    continue
                if expect is not None and expect not in output:
                    raise RuntimeError('expected %r in its output, got:\n%s' % (expect, output))
                print('ok %d %s (%s)' % (i, where, lang))
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                failed += 1
                print('not ok %d %s (%s)' % (i, where, lang))
                for line in str(e).splitlines():
                    print('# ' + line)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
