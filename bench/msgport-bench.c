/* msgport-bench.c: msgport-glib on the anchor benchmarks' workloads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   msgport-bench TOPOLOGY WORKLOAD METRIC [N]
 *   msgport-bench memory unstarted|started|used [CHANNELS]
 *   msgport-bench idle-ports same-thread|cross-thread|cross-process IDLE_PORTS [N]
 *   msgport-bench flow cross-thread|cross-process paced|unpaced [N [CONSUMER_NS [MARK]]]
 *   msgport-bench large bytes|fd|shared MIB [N]
 *
 * The first form plugs into the anchor runner (`run --with`): the workloads,
 * the bursts, the protocol and the JSON line are those of
 * ../../shared/bench/anchors/README.md, built with its common/bench.c.
 *
 *   same-thread    a MsgChannelMain with both ports started on the main
 *                  thread's GMainContext.
 *   cross-thread   port2 started on a second thread, in that thread's own
 *                  thread-default GMainContext.
 *   cross-process  port2 in a forked child, the two ends made with
 *                  msg_port_main_new_for_fd() on a socketpair; exits 77
 *                  until the library has it.
 *
 * End A (port1, main thread) sends or pings; end B (port2) receives or
 * echoes. B posts a "ready" message, (), first; after the last message of a
 * throughput run it posts its receipt time, a "t".
 *
 * Messages are handled by a function set with
 * msg_port_main_set_message_func(), the fast path for C, as the GLib
 * floors call theirs. With MSGPORT_BENCH_HANDLER=signal in the environment
 * they are ::message signal handlers instead, what bindings use; bench/run
 * measures both.
 *
 * memory: RSS (and malloc heap) per channel for CHANNELS channels that
 * were never started (default 1,000,000), or whose two ports were both
 * started on the main context (default 10,000), or "used": started, then
 * 1,000 messages posted on each and all delivered (default 1,000; the
 * heap is the figure there, as RSS keeps what the messages freed).
 *
 * flow: a producer posting N (default 1,000,000) messages of 1 KiB, each
 * with its own data, to a consumer that checks each and then waits until
 * CONSUMER_NS after it began (default 150,000 cross-thread, 500,000
 * cross-process): at least 100 times what building and posting a message
 * costs the producer (post_ns_per_msg in the output).
 * Paced, the producer posts while its port is writable (a high-water mark
 * of MARK bytes, default 256 KiB) and then awaits
 * msg_port_main_wait_writable_async(); unpaced it posts everything at
 * once. The consumer runs in a second thread (cross-thread: one process,
 * one RSS) or in a forked child over a socketpair (cross-process), which
 * sends its own getrusage() maximum RSS back after the last message.
 * Prints the maximum RSS of the producer and of the consumer, the most
 * that was ever buffered (msg_port_main_get_buffered_amount(), sampled
 * after each run of posts) and the seconds to post and to consume it
 * all. One mode per process, so that each has its own RSS.
 *
 * large: cross-process throughput of N messages of MIB MiB (default 500 of
 * 1 MiB, 20 from 16 MiB), in the anchors' protocol, the pattern of
 * W-1m, one message per turn of the sender's main loop. "bytes": an "ay"
 * GVariant built with one copy, as W-1m (bench_message_new(); from 32 MiB
 * into one of a few reused buffers, see large_message_new()), which the
 * library writes through the socket below 16 MiB and in a sealed memfd
 * that the receiver maps from 16 MiB; "fd": the sender writes each
 * message into a sealed memfd of its own and posts it as a descriptor
 * (msg_port_main_post_with_unix_fd_list()) beside (seq, handle), and the
 * receiver maps it; "shared": the sender builds each message in one of
 * LARGE_SHARED_BUFFERS memfds of its own, mapped once at set-up and
 * reused, posts the descriptor beside (seq, index, handle), and the
 * receiver maps it, checks it, and posts the index back to say the buffer
 * is free again (a buffer pool between cooperating processes: the receiver
 * trusts the sender not to write a buffer it has not got back). The
 * receiver checks the seq and one byte of every page. Prints a "large"
 * line with the carrier ("via": inline, memfd, fd or shared) and MB/s.
 *
 * idle-ports: W-small throughput of one channel while IDLE_PORTS other
 * ports, started and idle, share the receiving end's GMainContext; run it
 * with 0 for the figure alone. Across processes the idle ports are
 * connected: IDLE_PORTS more socketpairs, made before fork(), each process
 * starting its ends as ports in the context of its end of the busy channel
 * (A's in the parent, B's in the child), so that each process has
 * IDLE_PORTS idle socket ports on the library's I/O thread beside the busy
 * one.
 */

#include <msgport-glib.h>
#include <gio/gunixfdlist.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifdef MSG_BENCH_HAVE_FD_PORTS
# include <sys/socket.h>
# include <sys/wait.h>
#endif

#define ANCHOR                   "msgport-glib"
#define EXIT_UNSUPPORTED         77
#define DEFAULT_UNSTARTED        1000000
#define DEFAULT_STARTED          10000
#define DEFAULT_USED             1000
#define USED_MESSAGES            1000
#define LARGE_MEMFD_BYTES        (16 * 1024 * 1024)  /* the library's threshold */
#define LARGE_POOL_BYTES         (32 * 1024 * 1024)  /* glibc's largest mmap threshold */
#define LARGE_SHARED_BUFFERS     3

static const char *usage =
  "msgport-bench same-thread|cross-thread|cross-process WORKLOAD METRIC [N]\n"
  "       msgport-bench memory unstarted|started|used [CHANNELS]\n"
  "       msgport-bench idle-ports same-thread|cross-thread|cross-process IDLE_PORTS [N]\n"
  "       msgport-bench flow cross-thread|cross-process paced|unpaced [N [CONSUMER_NS [MARK]]]\n"
  "       msgport-bench large bytes|fd|shared MIB [N]";

static const char *topology;
static const char *metric_name;  /* what the JSON line says; NULL: as configured */
static BenchConfig config;
static guint       n_idle;       /* idle started ports beside end B (and,
                                  * across processes, beside end A too) */
static GPtrArray  *idle_objects; /* (owned): the idle channels, or ports */
#ifdef MSG_BENCH_HAVE_FD_PORTS
static int        *idle_fds;     /* (nullable): across processes, this
                                  * process's ends of the idle sockets */
#endif

/* large: 0 for the anchors' workloads; else the size of each message. */
static gsize       large_size;
static gboolean    large_fd;     /* in a memfd of the application's, as a
                                  * descriptor beside a (th) message */
static gboolean    large_shared; /* in one of a few memfds of the sender's,
                                  * reused, beside a (tuh) message */
static BenchWorkload large_workload;

/* End A: the main thread. */
static MsgPortMain *port_a;
static gboolean     finished;    /* the result was printed */
static gboolean     a_closed;
static gint64       t_start;     /* first post (throughput) or last ping */
static gint64      *rtt;         /* measured round trips */

/* End B: the main thread, a second thread or a child process. */
static MsgPortMain *port_b;
static GMainLoop   *loop_b;      /* (nullable): runs B's own context */
static gboolean     b_closed;
static guint64      count;       /* messages received */

/* Connects @port's handlers for the configured metric and starts it in the
 * thread-default context. */
static void
start_end (MsgPortMain            *port,
           MsgPortMainMessageFunc  on_throughput,
           MsgPortMainMessageFunc  on_latency,
           GCallback               on_close)
{
  MsgPortMainMessageFunc on_message = config.metric == BENCH_THROUGHPUT ? on_throughput : on_latency;

  if (g_strcmp0 (g_getenv ("MSGPORT_BENCH_HANDLER"), "signal") == 0)
    g_signal_connect (port, "message", G_CALLBACK (on_message), NULL);
  else
    msg_port_main_set_message_func (port, on_message, NULL, NULL);
  g_signal_connect (port, "close", on_close, NULL);
  msg_port_main_start (port);
}

/* --- end B ---------------------------------------------------------------- */

/* The pattern of bench_payload_fill() at one byte of each page of a large
 * payload, and its seq: the receiver reads every page, as the floor's
 * receiver, which copies the bytes out of its socket, does; a mapped
 * memfd costs its page faults here. */
static void
large_check_payload (const guint8 *bytes,
                     gsize         size)
{
  if (size != large_size || bench_payload_seq (bytes) != count)
    g_error ("large message %" G_GUINT64_FORMAT " out of order or of %" G_GSIZE_FORMAT " bytes",
             count, size);
  for (gsize k = 4096; k < size; k += 4096)
    if (bytes[k] != (guint8) k || bytes[k + 8] != (guint8) (k + 8))
      g_error ("large message %" G_GUINT64_FORMAT ": byte %" G_GSIZE_FORMAT " is wrong", count, k);
}

/* A large message in a memfd of the sender's: maps the descriptor the
 * event brought, in one go (MAP_POPULATE, as the library maps its own
 * memfds), and checks it. A shared buffer's index is posted back once the
 * mapping is gone. */
static void
large_check_fd (MsgPortMain     *port,
                MsgMessageEvent *event)
{
  g_autoptr(GError) error = NULL;
  GUnixFDList *fd_list = msg_message_event_get_unix_fd_list (event);
  guint64 seq;
  guint32 index = 0;
  gint32 handle;
  void *map;
  int fd;

  if (large_shared)
    g_variant_get (msg_message_event_get_data (event), "(tuh)", &seq, &index, &handle);
  else
    g_variant_get (msg_message_event_get_data (event), "(th)", &seq, &handle);
  if (seq != count || fd_list == NULL)
    g_error ("large message %" G_GUINT64_FORMAT " out of order, or without its descriptor", count);
  fd = g_unix_fd_list_get (fd_list, handle, &error);
  if (fd < 0)
    g_error ("large message %" G_GUINT64_FORMAT ": %s", count, error->message);
  map = mmap (NULL, large_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (map == MAP_FAILED)
    g_error ("large message %" G_GUINT64_FORMAT ": mmap: %s", count, g_strerror (errno));
  large_check_payload (map, large_size);
  munmap (map, large_size);
  close (fd);
  if (large_shared)
    msg_port_main_post (port, g_variant_new_uint32 (index), NULL);
}

static void
b_on_receive (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  if (large_fd || large_shared)
    large_check_fd (port, event);
  else if (large_size > 0)
    {
      GVariant *data = msg_message_event_get_data (event);
      gsize size;
      const guint8 *bytes = g_variant_get_fixed_array (data, &size, 1);

      large_check_payload (bytes, size);
    }
  else if (bench_message_seq (msg_message_event_get_data (event)) != count)
    g_error ("message %" G_GUINT64_FORMAT " out of order", count);
  if (++count == config.n)
    msg_port_main_post (port, g_variant_new_uint64 (bench_now_ns ()), NULL);
}

static void
b_on_echo (MsgPortMain     *port,
           MsgMessageEvent *event,
           gpointer         user_data)
{
  msg_port_main_post (port, msg_message_event_get_data (event), NULL);
}

static void
b_on_close (MsgPortMain *port,
            gpointer     user_data)
{
  b_closed = TRUE;
  if (loop_b != NULL)
    g_main_loop_quit (loop_b);
}

/* Starts @n idle ports in the thread-default context: n / 2 channels, both
 * ends, or across processes a port for each of this process's ends of the
 * idle sockets (idle_fds). They stay until the process exits. */
static void
start_idle_ports (guint n)
{
  idle_objects = g_ptr_array_new_with_free_func (g_object_unref);
#ifdef MSG_BENCH_HAVE_FD_PORTS
  if (idle_fds != NULL)
    {
      for (guint i = 0; i < n; i++)
        {
          g_autoptr(GError) error = NULL;
          MsgPortMain *port = msg_port_main_new_for_fd (idle_fds[i], &error);

          if (port == NULL)
            g_error ("idle port %u: msg_port_main_new_for_fd: %s", i, error->message);
          msg_port_main_start (port);
          g_ptr_array_add (idle_objects, port);
        }
      g_clear_pointer (&idle_fds, g_free);
      return;
    }
#endif
  for (guint i = 0; i < n / 2; i++)
    {
      MsgChannelMain *channel = msg_channel_main_new ();

      msg_port_main_start (msg_channel_main_get_port1 (channel));
      msg_port_main_start (msg_channel_main_get_port2 (channel));
      g_ptr_array_add (idle_objects, channel);
    }
}

/* Sets up end B in the calling thread's thread-default context and says
 * it is ready. */
static void
serve_b (void)
{
  start_idle_ports (n_idle);
  start_end (port_b, b_on_receive, b_on_echo,
             G_CALLBACK (b_on_close));
  msg_port_main_post (port_b, g_variant_new ("()"), NULL);
}

/* Serves end B in its own context until port_b closes. */
static void
run_b_loop (void)
{
  GMainContext *context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  loop_b = g_main_loop_new (context, FALSE);
  serve_b ();
  g_main_loop_run (loop_b);
  g_main_loop_unref (loop_b);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
}

static gpointer
b_thread (gpointer data)
{
  run_b_loop ();
  return NULL;
}

/* --- end A ---------------------------------------------------------------- */

static void
report_throughput (gint64 elapsed_ns)
{
  double seconds = elapsed_ns / 1e9;
  double msgs_per_s = config.n / seconds;

  if (large_size > 0)
    {
      printf ("{\"anchor\":\"%s\",\"topology\":\"%s\",\"workload\":\"%s\","
              "\"metric\":\"large\",\"via\":\"%s\",\"message_bytes\":%" G_GSIZE_FORMAT ","
              "\"n\":%" G_GUINT64_FORMAT ",\"seconds\":%.4f,\"msgs_per_s\":%.1f,"
              "\"mb_per_s\":%.1f,\"ns_per_msg\":%.0f}\n",
              ANCHOR, topology, config.workload->name,
              large_shared ? "shared" : large_fd ? "fd"
              : large_size >= LARGE_MEMFD_BYTES ? "memfd" : "inline",
              large_size, config.n, seconds, msgs_per_s, msgs_per_s * large_size / 1e6,
              elapsed_ns / (double) config.n);
      fflush (stdout);
      return;
    }
  if (metric_name == NULL)
    {
      bench_report_throughput (ANCHOR, topology, &config, elapsed_ns);
      return;
    }

  printf ("{\"anchor\":\"%s\",\"topology\":\"%s\",\"workload\":\"%s\",\"metric\":\"%s\","
          "\"idle_ports\":%u,\"n\":%" G_GUINT64_FORMAT ",\"seconds\":%.4f,"
          "\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"ns_per_msg\":%.0f}\n",
          ANCHOR, topology, config.workload->name, metric_name, n_idle, config.n,
          seconds, msgs_per_s, msgs_per_s * config.workload->payload_bytes / 1e6,
          elapsed_ns / (double) config.n);
  fflush (stdout);
}

static void
post_to_b (GVariant *message,
           gpointer  user_data)
{
  msg_port_main_post (port_a, message, NULL);
}

/* A large message in a memfd of the sender's own, sealed, posted as a
 * descriptor beside (seq, handle 0): the one copy is the sender's write()
 * of its data into the memfd, as the library's own memfd costs; the
 * library copies nothing, and the receiver maps the same pages. */
static void
large_post_fd (guint64 seq)
{
  static guint8 *payload;
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fd_list = NULL;
  gsize done = 0;
  int fd;

  if (payload == NULL)
    {
      payload = g_malloc (large_size);
      bench_payload_fill (&large_workload, payload);
    }
  bench_payload_set_seq (payload, seq);

  fd = memfd_create ("msgport-bench", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    g_error ("memfd_create: %s", g_strerror (errno));
  while (done < large_size)
    {
      ssize_t n = write (fd, payload + done, large_size - done);

      if (n < 0 && errno != EINTR)
        g_error ("write to a memfd: %s", g_strerror (errno));
      if (n > 0)
        done += n;
    }
  if (fcntl (fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
    g_error ("sealing a memfd: %s", g_strerror (errno));
  fd_list = g_unix_fd_list_new_from_array (&fd, 1);  /* takes fd */
  if (!msg_port_main_post_with_unix_fd_list (port_a, g_variant_new ("(th)", seq, 0), NULL, 0,
                                             fd_list, &error))
    {
      /* The library sends no descriptors to another process yet: not
       * supported (the child sees the socket close and exits). */
      g_printerr ("msgport-bench: large fd: %s\n", error->message);
      exit (EXIT_UNSUPPORTED);
    }
}

/* The shared buffers: memfds of the sender's, each mapped once, written
 * by the sender only while the receiver has not got it (the bit is set in
 * large_shared_free). */
typedef struct
{
  int     fd;
  guint8 *map;
} SharedBuffer;

static SharedBuffer large_shared_buffers[LARGE_SHARED_BUFFERS];
static guint        large_shared_free;      /* a bit per free buffer */
static gboolean     large_shared_stalled;   /* the sender waits for a buffer */

/* Set-up, before the clock starts (as the floor allocates its buffers):
 * the buffers and their pages. */
static void
large_shared_setup (void)
{
  for (guint i = 0; i < LARGE_SHARED_BUFFERS; i++)
    {
      SharedBuffer *buffer = &large_shared_buffers[i];

      buffer->fd = memfd_create ("msgport-bench-shared", MFD_CLOEXEC);
      if (buffer->fd < 0 || ftruncate (buffer->fd, large_size) < 0)
        g_error ("a shared buffer: %s", g_strerror (errno));
      buffer->map = mmap (NULL, large_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                          buffer->fd, 0);
      if (buffer->map == MAP_FAILED)
        g_error ("mapping a shared buffer: %s", g_strerror (errno));
      bench_payload_fill (&large_workload, buffer->map);
      large_shared_free |= 1u << i;
    }
}

/* Builds message @seq in a free shared buffer, with one copy (as
 * bench_message_new() builds W-1m), and posts its descriptor beside
 * (seq, index, handle 0); the library duplicates the descriptor. Returns
 * FALSE, posting nothing, while the receiver has every buffer. */
static gboolean
large_post_shared (guint64 seq)
{
  static guint8 *scratch;
  g_autoptr(GError) error = NULL;
  g_autoptr(GUnixFDList) fd_list = g_unix_fd_list_new ();
  guint index;

  if (large_shared_free == 0)
    return FALSE;
  index = (guint) g_bit_nth_lsf (large_shared_free, -1);
  large_shared_free &= ~(1u << index);
  if (scratch == NULL)
    {
      scratch = g_malloc (large_size);
      bench_payload_fill (&large_workload, scratch);
    }
  bench_payload_set_seq (scratch, seq);
  memcpy (large_shared_buffers[index].map, scratch, large_size);
  if (g_unix_fd_list_append (fd_list, large_shared_buffers[index].fd, &error) < 0 ||
      !msg_port_main_post_with_unix_fd_list (port_a, g_variant_new ("(tuh)", seq, index, 0), NULL, 0,
                                             fd_list, &error))
    g_error ("large shared: %s", error->message);
  return TRUE;
}

/* Buffers of large messages that the library has let go of, for the next
 * ones: any thread may free a message. */
static GAsyncQueue *large_pool;

static void
large_buffer_release (gpointer buffer)
{
  g_async_queue_push (large_pool, buffer);
}

/* Message @seq as an "ay" built with one copy, as bench_message_new()
 * builds W-1m. From LARGE_POOL_BYTES, glibc's malloc() maps every block
 * afresh, and unmaps it when it is freed (a 64 MiB message then costs
 * 16,384 page faults and the zeroing of its pages in the sender, about as
 * much as its transport); below, its heap reuses the memory of the
 * messages freed before, as it does for W-1m. So large messages are built
 * into a few buffers reused in turn, which the message gives back when it
 * is freed. */
static GVariant *
large_message_new (guint64 seq)
{
  static guint8 *scratch;
  guint8 *buffer;

  if (large_size < LARGE_POOL_BYTES)
    return bench_message_new (&large_workload, seq);

  if (scratch == NULL)
    {
      scratch = g_malloc (large_size);
      bench_payload_fill (&large_workload, scratch);
      large_pool = g_async_queue_new ();
    }
  buffer = g_async_queue_try_pop (large_pool);
  if (buffer == NULL)
    buffer = g_malloc (large_size);
  bench_payload_set_seq (scratch, seq);
  memcpy (buffer, scratch, large_size);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, buffer, large_size, TRUE,
                                  large_buffer_release, buffer);
}

/* The large sender: one message per turn of the main loop, as the
 * anchors' W-1m bursts of one; with shared buffers, it stops while the
 * receiver has them all, and goes on when one comes back. */
static guint64 large_next;

static gboolean
large_send_next (gpointer data)
{
  if (large_shared)
    {
      if (!large_post_shared (large_next))
        {
          large_shared_stalled = TRUE;
          return G_SOURCE_REMOVE;
        }
    }
  else if (large_fd)
    large_post_fd (large_next);
  else
    msg_port_main_post (port_a, large_message_new (large_next), NULL);
  return ++large_next < config.n;
}

static void
large_send (void)
{
  if (large_send_next (NULL))
    g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, large_send_next, NULL, NULL);
}

static void
a_on_throughput (MsgPortMain     *port,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  GVariant *message = msg_message_event_get_data (event);

  if (g_variant_is_of_type (message, G_VARIANT_TYPE_UINT32))
    {
      /* A shared buffer is back. */
      large_shared_free |= 1u << g_variant_get_uint32 (message);
      if (large_shared_stalled)
        {
          large_shared_stalled = FALSE;
          large_send ();
        }
    }
  else if (g_variant_is_of_type (message, G_VARIANT_TYPE_UNIT))
    {
      if (large_shared)
        large_shared_setup ();
      t_start = bench_now_ns ();
      if (large_size > 0)
        large_send ();
      else
        bench_send_bursts (&config, post_to_b, NULL);
    }
  else
    {
      report_throughput (g_variant_get_uint64 (message) - t_start);
      finished = TRUE;
    }
}

static void
a_on_ping (MsgPortMain     *port,
           MsgMessageEvent *event,
           gpointer         user_data)
{
  GVariant *message = msg_message_event_get_data (event);
  guint64 next = 0;

  if (!g_variant_is_of_type (message, G_VARIANT_TYPE_UNIT))
    {
      gint64 now = bench_now_ns ();
      guint64 seq = bench_message_seq (message);

      if (seq >= config.warmup)
        rtt[seq - config.warmup] = now - t_start;
      next = seq + 1;
    }

  if (next == config.warmup + config.n)
    {
      bench_report_latency (ANCHOR, topology, &config, rtt);
      finished = TRUE;
      return;
    }
  t_start = bench_now_ns ();
  msg_port_main_post (port, bench_message_new (config.workload, next), NULL);
}

static void
a_on_close (MsgPortMain *port,
            gpointer     user_data)
{
  a_closed = TRUE;
}

static void
iterate_until (const gboolean *done)
{
  while (!*done)
    g_main_context_iteration (NULL, TRUE);
}

/* Sets up end A on the main context; end B must be set up, or be set up
 * elsewhere, for the run to start. */
static void
start_a (void)
{
  if (config.metric == BENCH_LATENCY)
    rtt = g_new (gint64, config.n);
  start_end (port_a, a_on_throughput, a_on_ping,
             G_CALLBACK (a_on_close));
}

/* Runs end A until it has reported, then closes the channel and waits for
 * its own ::close. */
static void
run_a (void)
{
  iterate_until (&finished);
  msg_port_main_close (port_a);
  iterate_until (&a_closed);
  g_clear_pointer (&rtt, g_free);
}

static int
run_in_process (gboolean cross_thread)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  GThread *thread = NULL;

  port_a = msg_channel_main_get_port1 (channel);
  port_b = msg_channel_main_get_port2 (channel);
  start_a ();
  if (cross_thread)
    thread = g_thread_new ("end-b", b_thread, NULL);
  else
    serve_b ();

  run_a ();
  if (thread != NULL)
    g_thread_join (thread);
  else
    iterate_until (&b_closed);

  g_object_unref (channel);
  return 0;
}

#ifdef MSG_BENCH_HAVE_FD_PORTS
/* Before fork(): the sockets of the n_idle idle connected ports, one end
 * of each for the parent and one for the child. */
static void
make_idle_sockets (int **parent_ends,
                   int **child_ends)
{
  *parent_ends = g_new (int, n_idle);
  *child_ends = g_new (int, n_idle);
  for (guint i = 0; i < n_idle; i++)
    {
      int fds[2];

      if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        g_error ("socketpair (idle port %u of %u): %s", i, n_idle, g_strerror (errno));
      (*parent_ends)[i] = fds[0];
      (*child_ends)[i] = fds[1];
    }
}

/* After fork(): closes the other process's ends of the idle sockets and
 * keeps @ours for start_idle_ports(). */
static void
keep_idle_ends (int *ours,
                int *theirs)
{
  for (guint i = 0; i < n_idle; i++)
    close (theirs[i]);
  g_free (theirs);
  idle_fds = ours;
}

/* End B in a forked child, over a socketpair. Each side makes its port
 * after fork(), so that whatever the transport runs in the background
 * belongs to the process that uses it. So do the idle ports of idle-ports
 * mode: the parent starts its ends beside end A, the child beside end B. */
static int
run_cross_process (void)
{
  g_autoptr(GError) error = NULL;
  int *parent_idle_ends, *child_idle_ends;
  int fds[2];
  int status;
  pid_t pid;

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    g_error ("socketpair: %s", g_strerror (errno));
  make_idle_sockets (&parent_idle_ends, &child_idle_ends);

  fflush (stdout);
  pid = fork ();
  if (pid < 0)
    g_error ("fork: %s", g_strerror (errno));
  if (pid == 0)
    {
      close (fds[0]);
      keep_idle_ends (child_idle_ends, parent_idle_ends);
      port_b = msg_port_main_new_for_fd (fds[1], &error);
      if (port_b == NULL)
        g_error ("child: msg_port_main_new_for_fd: %s", error->message);
      run_b_loop ();
      g_object_unref (port_b);
      _exit (0);
    }

  close (fds[1]);
  keep_idle_ends (parent_idle_ends, child_idle_ends);
  port_a = msg_port_main_new_for_fd (fds[0], &error);
  if (port_a == NULL)
    g_error ("msg_port_main_new_for_fd: %s", error->message);
  start_idle_ports (n_idle);
  start_a ();
  run_a ();
  g_object_unref (port_a);

  if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("end B (pid %d) failed: status %d", (int) pid, status);
  return 0;
}
#else
/* The process transport is not in the library yet. When
 * msg_port_main_new_for_fd() appears in msgport-glib/msg-port-main.h,
 * bench/meson.build defines MSG_BENCH_HAVE_FD_PORTS and the version above
 * is built: a socketpair, fork(), and a port on each end. */
static int
run_cross_process (void)
{
  g_printerr ("msgport-bench: cross-process needs msg_port_main_new_for_fd()\n");
  return EXIT_UNSUPPORTED;
}
#endif

/* --- memory ---------------------------------------------------------------- */

static gsize
resident_bytes (void)
{
  unsigned long size = 0, resident = 0;
  FILE *statm = fopen ("/proc/self/statm", "r");

  if (statm == NULL || fscanf (statm, "%lu %lu", &size, &resident) != 2)
    g_error ("cannot read /proc/self/statm");
  fclose (statm);

  return (gsize) resident * (gsize) sysconf (_SC_PAGESIZE);
}

static gsize
heap_bytes (void)
{
  struct mallinfo2 info = mallinfo2 ();

  /* In use from the heap proper and from mmap()ed chunks. */
  return info.uordblks + info.hblkhd;
}

/* Makes @n channels, starts both ports of each if @started, and, if
 * @used, posts USED_MESSAGES messages on each and delivers them all; then
 * reports what the channels cost. Nothing is freed: the process exits. */
static int
run_memory (gboolean started,
            gboolean used,
            guint    n)
{
  MsgChannelMain **channels = g_new (MsgChannelMain *, n);
  gsize rss_before, heap_before, rss_after, heap_after;
  MsgChannelMain *warm;

  /* Type registration, class structures, the dispatcher of the main
   * context and the pointer array itself are not the channels' cost. */
  memset (channels, 0, n * sizeof *channels);
  warm = msg_channel_main_new ();
  msg_port_main_start (msg_channel_main_get_port1 (warm));

  rss_before = resident_bytes ();
  heap_before = heap_bytes ();
  for (guint i = 0; i < n; i++)
    {
      channels[i] = msg_channel_main_new ();
      if (started)
        {
          msg_port_main_start (msg_channel_main_get_port1 (channels[i]));
          msg_port_main_start (msg_channel_main_get_port2 (channels[i]));
        }
    }
  for (guint i = 0; used && i < n; i++)
    {
      for (guint j = 0; j < USED_MESSAGES; j++)
        msg_port_main_post (msg_channel_main_get_port1 (channels[i]), g_variant_new_uint32 (j), NULL);
      while (g_main_context_iteration (NULL, FALSE))
        ;
    }
  rss_after = resident_bytes ();
  heap_after = heap_bytes ();

  printf ("{\"anchor\":\"%s\",\"topology\":\"same-thread\",\"metric\":\"memory\","
          "\"state\":\"%s\",\"channels\":%u,\"rss_delta_bytes\":%" G_GSIZE_FORMAT ","
          "\"rss_bytes_per_channel\":%.1f,\"heap_bytes_per_channel\":%.1f}\n",
          ANCHOR, used ? "used" : started ? "started" : "unstarted", n, rss_after - rss_before,
          (double) (rss_after - rss_before) / n,
          (double) (heap_after - heap_before) / n);
  fflush (stdout);
  return 0;
}

/* --- flow ----------------------------------------------------------------- */

#define FLOW_DEFAULT_N            1000000
/* At least 100 times what building and posting a 1 KiB message costs the
 * producer flat out on the 2-CPU VM of docs/performance.md: about 1.1 µs
 * in process, 3 µs to a socket. */
#define FLOW_DEFAULT_CONSUMER_NS_THREAD   150000
#define FLOW_DEFAULT_CONSUMER_NS_PROCESS  500000
#define FLOW_DEFAULT_MARK         (256 * 1024)
#define FLOW_MESSAGE_BYTES        1024

typedef struct
{
  guint64  n;
  gint64   consumer_ns;
  gboolean unpaced;
  guint64  received;  /* the consumer's */
  gboolean hurried;   /* the consumer's: unpaced, all were posted */
  guint64  max_queued; /* the consumer's: the most messages queued for it */
  gint     done;      /* (atomic): the consumer took the last one */
} FlowRun;

/* A message of FLOW_MESSAGE_BYTES with data of its own, as a producer that
 * reads or computes each one makes: every byte is @i & 0xff. */
static GVariant *
flow_message (guint64 i)
{
  guint8 *data = g_malloc (FLOW_MESSAGE_BYTES);

  memset (data, (int) (i & 0xff), FLOW_MESSAGE_BYTES);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, FLOW_MESSAGE_BYTES,
                                  TRUE, g_free, data);
}

/* Shared with a forked consumer (MAP_SHARED): set by the producer once it
 * has posted everything. */
static gint *flow_posted_all;  /* (atomic) */

/* The consumer's handler: checks that the message is the next one, then
 * waits until CONSUMER_NS after it began, as a consumer that waits for a
 * disk or a peer would (it takes no CPU from the producer, and none from
 * the other users of the machine over a long run). Unpaced, once the
 * producer has posted everything (the backlog, and the memory, are then
 * at their most), it drains the rest at once rather than take
 * N x CONSUMER_NS to show what it already has. Returns whether it was
 * the last one. */
static gboolean
flow_take (FlowRun         *run,
           MsgPortMain     *port,
           MsgMessageEvent *event)
{
  GVariant *data = msg_message_event_get_data (event);
  gint64 until = bench_now_ns () + run->consumer_ns;
  struct timespec deadline = { until / 1000000000, until % 1000000000 };
  const guint8 *bytes;
  gsize size;

  if (!g_variant_is_of_type (data, G_VARIANT_TYPE_BYTESTRING))
    g_error ("flow: message %" G_GUINT64_FORMAT " is a %s", run->received,
             g_variant_get_type_string (data));
  bytes = g_variant_get_fixed_array (data, &size, 1);
  if (size != FLOW_MESSAGE_BYTES || bytes[0] != (run->received & 0xff) ||
      bytes[size - 1] != (run->received & 0xff))
    g_error ("flow: message %" G_GUINT64_FORMAT " out of order or damaged", run->received);

  if (run->unpaced && !run->hurried && g_atomic_int_get (flow_posted_all))
    run->hurried = TRUE;
  /* bench_now_ns() is CLOCK_MONOTONIC. */
  while (!run->hurried &&
         clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR)
    ;
  if (++run->received < run->n)
    return FALSE;
  run->max_queued = MAX (run->max_queued, msg_port_main_get_max_queued_messages (port));
  return TRUE;
}

/* In the consumer's thread: its sleeps end on time, not up to 50 µs
 * later (the default timer slack). */
static void
flow_consumer_init (void)
{
  prctl (PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

static void
flow_consume (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  FlowRun *run = user_data;

  if (flow_take (run, port, event))
    {
      g_atomic_int_set (&run->done, 1);
      g_main_context_wakeup (NULL);
    }
}

typedef struct
{
  FlowRun       *run;
  MsgPortMain   *port;     /* (owned) */
  GMainContext  *context;  /* (owned) */
  GMainLoop     *loop;     /* (owned) */
  GMutex         lock;
  GCond          cond;
  gboolean       started;  /* protected by @lock */
} FlowConsumer;

static gpointer
flow_consumer_thread (gpointer data)
{
  FlowConsumer *consumer = data;

  g_main_context_push_thread_default (consumer->context);
  flow_consumer_init ();
  msg_port_main_set_message_func (consumer->port, flow_consume, consumer->run, NULL);
  msg_port_main_start (consumer->port);
  g_mutex_lock (&consumer->lock);
  consumer->started = TRUE;
  g_cond_signal (&consumer->cond);
  g_mutex_unlock (&consumer->lock);
  g_main_loop_run (consumer->loop);
  msg_port_main_close (consumer->port);
  g_main_context_iteration (consumer->context, FALSE);
  g_main_context_pop_thread_default (consumer->context);
  return NULL;
}

static void
flow_wait_done (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  gboolean *done = user_data;

  if (!msg_port_main_wait_writable_finish (MSG_PORT_MAIN (source), result, NULL))
    g_error ("wait_writable failed");
  *done = TRUE;
}

static gboolean
flow_quit (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  guint64 max_buffered;  /* bytes, the most buffered_amount said */
  gint64  post_ns;       /* spent building and posting */
  gint64  t_posted;      /* when the last message was posted */
} FlowProduced;

/* The producer: posts @n messages on @producer in the main context, paced
 * (while the port is writable, then awaiting wait_writable_async()) or all
 * at once. */
static void
flow_produce (MsgPortMain  *producer,
              gboolean      paced,
              guint64       n,
              FlowProduced *out)
{
  guint64 posted = 0;

  memset (out, 0, sizeof *out);
  while (posted < n)
    {
      gboolean done = FALSE;
      gint64 t = bench_now_ns ();

      while (posted < n && (!paced || msg_port_main_is_writable (producer)))
        msg_port_main_post (producer, flow_message (posted++), NULL);
      out->post_ns += bench_now_ns () - t;
      out->max_buffered = MAX (out->max_buffered, msg_port_main_get_buffered_amount (producer));
      if (posted == n)
        {
          g_atomic_int_set (flow_posted_all, 1);
          break;
        }
      msg_port_main_wait_writable_async (producer, NULL, flow_wait_done, &done);
      while (!done)
        g_main_context_iteration (NULL, TRUE);
    }
  out->t_posted = bench_now_ns ();
}

static void
flow_report (const char         *where,
             gboolean            paced,
             const FlowRun      *run,
             guint64             mark,
             const FlowProduced *produced,
             gint64              t0,
             gint64              t_end,
             long                consumer_max_rss_kb)  /* -1: this process's */
{
  struct rusage rusage;

  getrusage (RUSAGE_SELF, &rusage);
  printf ("{\"anchor\":\"%s\",\"topology\":\"%s\",\"metric\":\"flow\",\"mode\":\"%s\","
          "\"n\":%" G_GUINT64_FORMAT ",\"message_bytes\":%d,\"consumer_ns\":%" G_GINT64_FORMAT ","
          "\"high_water_mark\":%" G_GUINT64_FORMAT ",\"post_ns_per_msg\":%.0f,"
          "\"posting_seconds\":%.2f,\"seconds\":%.2f,"
          "\"max_buffered_bytes\":%" G_GUINT64_FORMAT ","
          "\"consumer_max_queued\":%" G_GUINT64_FORMAT ","
          "\"max_rss_kb\":%ld,\"consumer_max_rss_kb\":%ld}\n",
          ANCHOR, where, paced ? "paced" : "unpaced", run->n, FLOW_MESSAGE_BYTES,
          run->consumer_ns, paced ? mark : 0, produced->post_ns / (double) run->n,
          (produced->t_posted - t0) / 1e9, (t_end - t0) / 1e9, produced->max_buffered,
          run->max_queued, rusage.ru_maxrss,
          consumer_max_rss_kb < 0 ? rusage.ru_maxrss : consumer_max_rss_kb);
  fflush (stdout);
}

/* The consumer in a second thread of this process: one RSS for both. */
static int
run_flow_cross_thread (gboolean paced,
                       FlowRun *run,
                       guint64  mark)
{
  MsgChannelMain *channel;
  MsgPortMain *producer;
  FlowConsumer consumer = { run, NULL, NULL, NULL, { 0 }, { 0 }, FALSE };
  FlowProduced produced;
  GThread *thread;
  gint64 t0, t_end;

  channel = msg_channel_main_new ();
  producer = msg_channel_main_get_port1 (channel);
  consumer.port = g_object_ref (msg_channel_main_get_port2 (channel));
  consumer.context = g_main_context_new ();
  consumer.loop = g_main_loop_new (consumer.context, FALSE);
  g_mutex_init (&consumer.lock);
  g_cond_init (&consumer.cond);
  thread = g_thread_new ("consumer", flow_consumer_thread, &consumer);
  g_mutex_lock (&consumer.lock);
  while (!consumer.started)
    g_cond_wait (&consumer.cond, &consumer.lock);
  g_mutex_unlock (&consumer.lock);

  if (paced)
    msg_port_main_set_high_water_mark (producer, mark);

  t0 = bench_now_ns ();
  flow_produce (producer, paced, run->n, &produced);
  while (!g_atomic_int_get (&run->done))
    g_main_context_iteration (NULL, TRUE);
  t_end = bench_now_ns ();

  /* One process: the consumer's RSS is the producer's (-1). */
  flow_report ("cross-thread", paced, run, mark, &produced, t0, t_end, -1);

  msg_port_main_close (producer);
  g_main_context_invoke (consumer.context, flow_quit, consumer.loop);
  g_thread_join (thread);
  g_main_loop_unref (consumer.loop);
  g_main_context_unref (consumer.context);
  g_object_unref (consumer.port);
  g_mutex_clear (&consumer.lock);
  g_cond_clear (&consumer.cond);
  g_object_unref (channel);
  return 0;
}

#ifdef MSG_BENCH_HAVE_FD_PORTS
typedef struct
{
  FlowRun  *run;
  gboolean  ready;             /* the consumer said () */
  gboolean  reported;          /* the consumer sent its (txt) */
  gboolean  closed;
  long      consumer_max_rss_kb;
} FlowParent;

/* The child's handler: consumes, and after the last message sends back
 * how many it took, its maximum RSS and the most that was queued for it,
 * (txt). */
static void
flow_child_consume (MsgPortMain     *port,
                    MsgMessageEvent *event,
                    gpointer         user_data)
{
  FlowRun *run = user_data;

  if (flow_take (run, port, event))
    {
      struct rusage rusage;

      getrusage (RUSAGE_SELF, &rusage);
      msg_port_main_post (port, g_variant_new ("(txt)", run->received,
                                               (gint64) rusage.ru_maxrss, run->max_queued),
                          NULL);
      run->done = 1;
    }
}

static void
flow_on_close (MsgPortMain *port,
               gpointer     user_data)
{
  *(gboolean *) user_data = TRUE;
}

/* The producer's handler: the consumer's () and, at the end, its (txt). */
static void
flow_parent_receive (MsgPortMain     *port,
                     MsgMessageEvent *event,
                     gpointer         user_data)
{
  FlowParent *parent = user_data;
  GVariant *data = msg_message_event_get_data (event);

  if (g_variant_is_of_type (data, G_VARIANT_TYPE_UNIT))
    parent->ready = TRUE;
  else if (g_variant_is_of_type (data, G_VARIANT_TYPE ("(txt)")))
    {
      guint64 received;
      gint64 rss;

      g_variant_get (data, "(txt)", &received, &rss, &parent->run->max_queued);
      if (received != parent->run->n)
        g_error ("flow: the consumer took %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT,
                 received, parent->run->n);
      parent->consumer_max_rss_kb = (long) rss;
      parent->reported = TRUE;
    }
  else
    g_error ("flow: unexpected %s from the consumer", g_variant_get_type_string (data));
}

/* The consumer in a forked child, over a socketpair; each process makes
 * its port after fork(), and each reports its own maximum RSS. */
static int
run_flow_cross_process (gboolean paced,
                        FlowRun *run,
                        guint64  mark)
{
  g_autoptr(GError) error = NULL;
  FlowParent parent = { run, FALSE, FALSE, FALSE, -1 };
  FlowProduced produced;
  MsgPortMain *producer;
  gint64 t0, t_end;
  int fds[2];
  int status;
  pid_t pid;

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    g_error ("socketpair: %s", g_strerror (errno));
  fflush (stdout);
  pid = fork ();
  if (pid < 0)
    g_error ("fork: %s", g_strerror (errno));
  if (pid == 0)
    {
      MsgPortMain *consumer;
      gboolean closed = FALSE;

      close (fds[0]);
      flow_consumer_init ();
      consumer = msg_port_main_new_for_fd (fds[1], &error);
      if (consumer == NULL)
        g_error ("flow child: msg_port_main_new_for_fd: %s", error->message);
      msg_port_main_set_message_func (consumer, flow_child_consume, run, NULL);
      g_signal_connect (consumer, "close", G_CALLBACK (flow_on_close), &closed);
      msg_port_main_start (consumer);
      msg_port_main_post (consumer, g_variant_new ("()"), NULL);
      /* Until the producer has the report and closes the channel. */
      while (!closed)
        g_main_context_iteration (NULL, TRUE);
      if (!run->done)
        g_error ("flow child: closed after %" G_GUINT64_FORMAT " messages", run->received);
      g_object_unref (consumer);
      _exit (0);
    }

  close (fds[1]);
  producer = msg_port_main_new_for_fd (fds[0], &error);
  if (producer == NULL)
    g_error ("flow: msg_port_main_new_for_fd: %s", error->message);
  msg_port_main_set_message_func (producer, flow_parent_receive, &parent, NULL);
  g_signal_connect (producer, "close", G_CALLBACK (flow_on_close), &parent.closed);
  msg_port_main_start (producer);
  while (!parent.ready && !parent.closed)
    g_main_context_iteration (NULL, TRUE);
  if (paced)
    msg_port_main_set_high_water_mark (producer, mark);

  t0 = bench_now_ns ();
  flow_produce (producer, paced, run->n, &produced);
  while (!parent.reported && !parent.closed)
    g_main_context_iteration (NULL, TRUE);
  t_end = bench_now_ns ();
  if (!parent.reported)
    g_error ("flow: the consumer closed before it reported");

  flow_report ("cross-process", paced, run, mark, &produced, t0, t_end,
               parent.consumer_max_rss_kb);

  msg_port_main_close (producer);
  while (!parent.closed)
    g_main_context_iteration (NULL, TRUE);
  g_object_unref (producer);
  if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("flow: the consumer (pid %d) failed: status %d", (int) pid, status);
  return 0;
}
#endif

static int
run_flow (const char *where,
          gboolean    paced,
          guint64     n,
          gint64      consumer_ns,
          guint64     mark)
{
  FlowRun run = { n, consumer_ns, !paced, 0, FALSE, 0, 0 };

  flow_posted_all = mmap (NULL, sizeof *flow_posted_all, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (flow_posted_all == MAP_FAILED)
    g_error ("flow: mmap: %s", g_strerror (errno));
  if (strcmp (where, "cross-thread") == 0)
    return run_flow_cross_thread (paced, &run, mark);
  if (strcmp (where, "cross-process") == 0)
    {
#ifdef MSG_BENCH_HAVE_FD_PORTS
      return run_flow_cross_process (paced, &run, mark);
#else
      g_printerr ("msgport-bench: cross-process needs msg_port_main_new_for_fd()\n");
      return EXIT_UNSUPPORTED;
#endif
    }
  bench_usage_exit (usage);
}

/* --- main ------------------------------------------------------------------ */

static guint
parse_count (const char *text)
{
  guint64 value;

  if (!g_ascii_string_to_unsigned (text, 10, 1, G_MAXUINT, &value, NULL))
    bench_usage_exit (usage);
  return (guint) value;
}

int
main (int    argc,
      char **argv)
{
  gboolean cross_thread;

  if (argc >= 3 && strcmp (argv[1], "memory") == 0)
    {
      gboolean used = strcmp (argv[2], "used") == 0;
      gboolean started = used || strcmp (argv[2], "started") == 0;

      if (argc > 4 || (!started && strcmp (argv[2], "unstarted") != 0))
        bench_usage_exit (usage);
      return run_memory (started, used,
                         argc == 4 ? parse_count (argv[3])
                                   : used ? DEFAULT_USED : started ? DEFAULT_STARTED : DEFAULT_UNSTARTED);
    }

  if (argc >= 4 && strcmp (argv[1], "flow") == 0)
    {
      gboolean paced = strcmp (argv[3], "paced") == 0;

      if (argc > 7 || (!paced && strcmp (argv[3], "unpaced") != 0))
        bench_usage_exit (usage);
      return run_flow (argv[2], paced,
                       argc >= 5 ? parse_count (argv[4]) : FLOW_DEFAULT_N,
                       argc >= 6 ? parse_count (argv[5])
                       : strcmp (argv[2], "cross-process") == 0 ? FLOW_DEFAULT_CONSUMER_NS_PROCESS
                       : FLOW_DEFAULT_CONSUMER_NS_THREAD,
                       argc >= 7 ? parse_count (argv[6]) : FLOW_DEFAULT_MARK);
    }

  if (argc >= 4 && strcmp (argv[1], "large") == 0)
    {
      guint mib = parse_count (argv[3]);

      large_fd = strcmp (argv[2], "fd") == 0;
      large_shared = strcmp (argv[2], "shared") == 0;
      if (argc > 5 || mib > 1024 ||
          (!large_fd && !large_shared && strcmp (argv[2], "bytes") != 0))
        bench_usage_exit (usage);
      large_size = (gsize) mib * 1024 * 1024;
      large_workload = (BenchWorkload) { mib == 1 ? "W-1m" : g_strdup_printf ("W-%um", mib),
                                         large_size, mib >= 16 ? 20 : 500, 1 };
      config = (BenchConfig) { &large_workload, BENCH_THROUGHPUT,
                               argc == 5 ? parse_count (argv[4]) : large_workload.default_n, 0 };
      topology = "cross-process";
      return run_cross_process ();
    }

  if (argc >= 4 && strcmp (argv[1], "idle-ports") == 0)
    {
      char *throughput_argv[] = { (char *) "W-small", (char *) "throughput",
                                  argc == 5 ? argv[4] : NULL };

      if (argc > 5)
        bench_usage_exit (usage);
      topology = argv[2];
      n_idle = strcmp (argv[3], "0") == 0 ? 0 : parse_count (argv[3]);
      metric_name = "idle-ports";
      bench_parse_args (argc - 2, throughput_argv, usage, &config);
    }
  else
    {
      if (argc < 2)
        bench_usage_exit (usage);
      topology = argv[1];
      bench_parse_args (argc - 2, argv + 2, usage, &config);
    }

  cross_thread = strcmp (topology, "cross-thread") == 0;
  if (strcmp (topology, "cross-process") == 0)
    return run_cross_process ();
  if (!cross_thread && strcmp (topology, "same-thread") != 0)
    bench_usage_exit (usage);

  return run_in_process (cross_thread);
}
