/* process-child.c: the child side of the process tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   process-child MODE [ARGS]
 *
 * Every mode talks to its parent through msg_port_main_get_parent_port()
 * and exits 0 when it is done, non-zero on any failure.
 */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <msgport-glib.h>

#ifdef MSG_TEST_INTERNAL
# include "wire/msg-wire-private.h"
#endif

static GMainLoop *loop;
static MsgPortMain *parent;

static void
quit_on_close (MsgPortMain *port,
               gpointer     user_data)
{
  g_main_loop_quit (loop);
}

/* echo: sends every message back, with the ports that came with it. */
static void
echo_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);
  g_autoptr(GError) error = NULL;

  if (!msg_port_main_post_message (port, msg_message_event_get_data (event),
                                   ports, n_ports, &error))
    g_error ("echo: %s", error->message);
}

/* reply-on-ports: answers each message on the ports it carries, then
 * closes them. */
static void
reply_message (MsgPortMain     *port,
               MsgMessageEvent *event,
               gpointer         user_data)
{
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);

  for (guint i = 0; i < n_ports; i++)
    {
      msg_port_main_post (ports[i], msg_message_event_get_data (event), NULL);
      msg_port_main_close (ports[i]);
    }
}

/* respond: answers each request (msg_port_main_request_async()) with its
 * string doubled; drops the request "ignore" and its reply port unanswered. */
static void
respond_message (MsgPortMain     *port,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  const char *text = g_variant_get_string (msg_message_event_get_data (event), NULL);
  g_autoptr(GError) error = NULL;

  if (g_str_equal (text, "ignore"))
    return;
  if (!msg_message_event_reply (event, g_variant_new_take_string (g_strconcat (text, text, NULL)),
                                &error))
    g_error ("respond: %s", error->message);
}

/* chain-b K: counts the data port's messages; after seq K - 1, sends the
 * data port on to C and tells the parent.
 * chain-b-exit K: the same, then flushes both and exits at once. */
typedef struct
{
  MsgPortMain *to_c;
  guint64      k;
  guint64      next;
  gboolean     exit_after;
} ChainB;

static void
chain_b_data (MsgPortMain     *data_port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  ChainB *b = user_data;
  guint64 seq = g_variant_get_uint64 (msg_message_event_get_data (event));
  g_autoptr(GError) error = NULL;

  if (seq != b->next)
    g_error ("chain-b: got %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT, seq, b->next);
  b->next++;
  if (b->next == b->k)
    {
      if (!msg_port_main_post_message (b->to_c, g_variant_new_string ("data"), &data_port, 1, &error))
        g_error ("chain-b: %s", error->message);
      if (b->exit_after && !msg_port_main_flush (b->to_c, NULL, &error))
        g_error ("chain-b: flush: %s", error->message);
      msg_port_main_post (parent, g_variant_new_uint64 (b->k), NULL);
      if (b->exit_after)
        {
          if (!msg_port_main_flush (parent, NULL, &error))
            g_error ("chain-b: flush: %s", error->message);
          _exit (0);
        }
    }
}

static void
chain_b_control (MsgPortMain     *port,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  ChainB *b = user_data;
  const char *what = g_variant_get_string (msg_message_event_get_data (event), NULL);
  MsgPortMain *received = msg_message_event_get_port (event, 0);

  if (g_str_equal (what, "to-c"))
    b->to_c = g_object_ref (received);
  else
    {
      g_signal_connect (received, "message", G_CALLBACK (chain_b_data), b);
      msg_port_main_start (received);
    }
}

/* chain-c N: receives the data port from B and checks that the messages
 * continue where B stopped, up to N - 1; reports (first, count). */
typedef struct
{
  guint64 n;
  guint64 first;
  guint64 next;
  gboolean started;
} ChainC;

static void
chain_c_data (MsgPortMain     *data_port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  ChainC *c = user_data;
  guint64 seq = g_variant_get_uint64 (msg_message_event_get_data (event));

  if (!c->started)
    {
      c->started = TRUE;
      c->first = c->next = seq;
    }
  if (seq != c->next)
    g_error ("chain-c: got %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT, seq, c->next);
  c->next++;
  if (c->next == c->n)
    {
      msg_port_main_post (parent, g_variant_new ("(tt)", c->first, c->next - c->first), NULL);
      /* And the other way, to whoever holds the data port's peer. */
      msg_port_main_post (data_port, g_variant_new_string ("from c"), NULL);
    }
}

static void
chain_c_from_b (MsgPortMain     *from_b,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  MsgPortMain *data_port = msg_message_event_get_port (event, 0);

  g_signal_connect (data_port, "message", G_CALLBACK (chain_c_data), user_data);
  msg_port_main_start (data_port);
}

static void
chain_c_control (MsgPortMain     *port,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  MsgPortMain *from_b = msg_message_event_get_port (event, 0);

  g_signal_connect (from_b, "message", G_CALLBACK (chain_c_from_b), user_data);
  msg_port_main_start (from_b);
}

/* hop M: receives a port, takes M of its messages, then sends it back to
 * the parent, with whatever else was queued on it. */
typedef struct
{
  guint64 m;
  guint64 next;
} Hop;

static void
hop_data (MsgPortMain     *port,
          MsgMessageEvent *event,
          gpointer         user_data)
{
  Hop *hop = user_data;
  guint64 seq = g_variant_get_uint64 (msg_message_event_get_data (event));

  if (seq != hop->next)
    g_error ("hop: got %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT, seq, hop->next);
  if (++hop->next == hop->m)
    msg_port_main_post_message (parent, g_variant_new_uint64 (hop->next), &port, 1, NULL);
}

static void
hop_control (MsgPortMain     *port,
             MsgMessageEvent *event,
             gpointer         user_data)
{
  MsgPortMain *data_port = msg_message_event_get_port (event, 0);

  g_signal_connect (data_port, "message", G_CALLBACK (hop_data), user_data);
  msg_port_main_start (data_port);
}

/* stream: posts numbered messages in bursts until killed. */
static gboolean
stream_burst (gpointer user_data)
{
  guint64 *next = user_data;

  for (guint i = 0; i < 100; i++)
    msg_port_main_post (parent, g_variant_new_uint64 ((*next)++), NULL);
  return G_SOURCE_CONTINUE;
}

/* ports-on-request: answers a message holding a number N with N messages,
 * each carrying the first port of a new channel whose other port it keeps
 * until the parent port closes: the ports it sends stay connected, and
 * each holds a descriptor in the parent. */
static void
ports_on_request (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  GPtrArray *kept = user_data;
  guint32 n = g_variant_get_uint32 (msg_message_event_get_data (event));

  for (guint32 i = 0; i < n; i++)
    {
      g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
      MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
      g_autoptr(GError) error = NULL;

      g_ptr_array_add (kept, g_object_ref (msg_channel_main_get_port2 (channel)));
      if (!msg_port_main_post_message (port, g_variant_new_uint32 (i), &port1, 1, &error))
        g_error ("ports-on-request: %s", error->message);
    }
}

/* exit-after N: exits at once on the Nth message. */
static void
exit_after_message (MsgPortMain     *port,
                    MsgMessageEvent *event,
                    gpointer         user_data)
{
  guint64 *left = user_data;

  if (*left <= 1)
    _exit (0);
  (*left)--;
}

/* port-stream N: posts N numbered messages as fast as it can, each with
 * the first port of a new channel, whose other port it drops. */
static void
port_stream (guint64 n)
{
  for (guint64 i = 0; i < n; i++)
    {
      g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
      MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
      g_autoptr(GError) error = NULL;

      if (!msg_port_main_post_message (parent, g_variant_new_uint64 (i), &port1, 1, &error))
        g_error ("port-stream: %s", error->message);
    }
}

/* fds: messages with descriptors, on the parent port and on every port
 * it adopts, each a tuple whose first member says what to do:
 *   ("use", h_file, h_pipe) with a port: reads the file from its start,
 *     writes what it read into the pipe, posts it on the port and closes
 *     the port;
 *   ("echo", ...): sends the message back, with its descriptors and ports;
 *   ("keep",) with a port: keeps it, for "relay";
 *   ("relay",) with ports: sends them on, not started, on the kept port,
 *     as ("adopt",);
 *   ("adopt",) with ports: starts them, with this same handler. */
static MsgPortMain *fds_kept;

static void fds_message (MsgPortMain     *port,
                         MsgMessageEvent *event,
                         gpointer         user_data);

static void
fds_use (MsgMessageEvent *event,
         MsgPortMain     *reply)
{
  GUnixFDList *list = msg_message_event_get_unix_fd_list (event);
  const int *fds;
  gint32 h_file, h_pipe;
  char buffer[256];
  gssize n;

  if (list == NULL || reply == NULL)
    g_error ("fds: use: no descriptors or no port");
  fds = g_unix_fd_list_peek_fds (list, NULL);
  g_variant_get (msg_message_event_get_data (event), "(&shh)", NULL, &h_file, &h_pipe);
  n = pread (fds[h_file], buffer, sizeof buffer - 1, 0);
  if (n < 0 || write (fds[h_pipe], buffer, n) != n)
    g_error ("fds: use: %s", g_strerror (errno));
  buffer[n] = '\0';
  msg_port_main_post (reply, g_variant_new_string (buffer), NULL);
  msg_port_main_close (reply);
}

static void
fds_message (MsgPortMain     *port,
             MsgMessageEvent *event,
             gpointer         user_data)
{
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);
  GVariant *data = msg_message_event_get_data (event);
  const char *command;
  g_autoptr(GError) error = NULL;

  g_variant_get_child (data, 0, "&s", &command);
  if (g_str_equal (command, "use"))
    fds_use (event, n_ports > 0 ? ports[0] : NULL);
  else if (g_str_equal (command, "echo"))
    {
      if (!msg_port_main_post_with_unix_fd_list (port, data, ports, n_ports,
                                                 msg_message_event_get_unix_fd_list (event),
                                                 &error))
        g_error ("fds: echo: %s", error->message);
    }
  else if (g_str_equal (command, "keep") && n_ports == 1)
    g_set_object (&fds_kept, ports[0]);
  else if (g_str_equal (command, "relay") && fds_kept != NULL)
    {
      if (!msg_port_main_post_message (fds_kept, g_variant_new ("(s)", "adopt"), ports, n_ports,
                                       &error))
        g_error ("fds: relay: %s", error->message);
    }
  else if (g_str_equal (command, "adopt"))
    {
      for (guint i = 0; i < n_ports; i++)
        {
          g_signal_connect (ports[i], "message", G_CALLBACK (fds_message), NULL);
          msg_port_main_start (ports[i]);
        }
    }
  else
    g_error ("fds: unknown command %s", command);
}

#ifdef MSG_TEST_INTERNAL
/* memfd-stream N (process-child-internal only): posts N messages of 1 MiB
 * as fast as it can, each in a sealed memfd (the threshold lowered to
 * 1 MiB), numbered in their first byte. */
static void
memfd_stream (guint64 n)
{
  gsize size = 1024 * 1024;
  g_autofree guint8 *bytes = g_malloc0 (size);

  msg_wire_set_memfd_threshold (size);
  for (guint64 i = 0; i < n; i++)
    {
      bytes[0] = (guint8) i;
      msg_port_main_post (parent, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, size, 1),
                          NULL);
    }
}
#endif

/* busy: each message (a uint32) keeps the main loop busy for that many
 * milliseconds, as a slow handler would (the library's I/O thread still
 * runs), then answers "done". */
static void
busy_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  GVariant *data = msg_message_event_get_data (event);
  gint64 until = g_get_monotonic_time () +
                 (gint64) g_variant_get_uint32 (data) * G_TIME_SPAN_MILLISECOND;

  while (g_get_monotonic_time () < until)
    g_usleep (1000);
  msg_port_main_post (port, g_variant_new_string ("done"), NULL);
}

int
main (int    argc,
      char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "";
  guint64 arg = argc > 2 ? g_ascii_strtoull (argv[2], NULL, 10) : 0;
  ChainB chain_b = { NULL, arg, 0, g_str_equal (mode, "chain-b-exit") };
  ChainC chain_c = { arg, 0, 0, FALSE };
  Hop hop = { arg, 0 };
  g_autoptr(GPtrArray) kept = g_ptr_array_new_with_free_func (g_object_unref);
  guint64 next = 0;
  g_autoptr(GError) error = NULL;

  loop = g_main_loop_new (NULL, FALSE);
  parent = msg_port_main_get_parent_port ();
  if (parent == NULL)
    g_error ("no parent port");
  g_assert_true (msg_port_main_get_parent_port () == parent);
  g_assert_null (g_getenv (MSG_PARENT_PORT_ENV));
  g_signal_connect (parent, "close", G_CALLBACK (quit_on_close), NULL);

  if (g_str_equal (mode, "echo"))
    g_signal_connect (parent, "message", G_CALLBACK (echo_message), NULL);
  else if (g_str_equal (mode, "busy"))
    g_signal_connect (parent, "message", G_CALLBACK (busy_message), NULL);
  else if (g_str_equal (mode, "reply-on-ports"))
    g_signal_connect (parent, "message", G_CALLBACK (reply_message), NULL);
  else if (g_str_equal (mode, "respond"))
    g_signal_connect (parent, "message", G_CALLBACK (respond_message), NULL);
  else if (g_str_equal (mode, "chain-b") || g_str_equal (mode, "chain-b-exit"))
    g_signal_connect (parent, "message", G_CALLBACK (chain_b_control), &chain_b);
  else if (g_str_equal (mode, "chain-c"))
    g_signal_connect (parent, "message", G_CALLBACK (chain_c_control), &chain_c);
  else if (g_str_equal (mode, "hop"))
    g_signal_connect (parent, "message", G_CALLBACK (hop_control), &hop);
  else if (g_str_equal (mode, "fds"))
    g_signal_connect (parent, "message", G_CALLBACK (fds_message), NULL);
  else if (g_str_equal (mode, "stream"))
    g_idle_add (stream_burst, &next);
  else if (g_str_equal (mode, "port-stream"))
    port_stream (arg);
#ifdef MSG_TEST_INTERNAL
  else if (g_str_equal (mode, "memfd-stream"))
    memfd_stream (arg);
#endif
  else if (g_str_equal (mode, "burst-exit"))
    {
      /* Posts, flushes and exits at once, without closing. */
      for (guint64 i = 0; i < arg; i++)
        msg_port_main_post (parent, g_variant_new_uint64 (i), NULL);
      if (!msg_port_main_flush (parent, NULL, &error))
        g_error ("flush: %s", error->message);
      _exit (0);
    }
  else if (g_str_equal (mode, "ports-on-request"))
    g_signal_connect (parent, "message", G_CALLBACK (ports_on_request), kept);
  else if (g_str_equal (mode, "exit-after"))
    {
      /* Reads N messages, then exits at once, without closing, while
       * the parent still writes. */
      g_signal_connect (parent, "message", G_CALLBACK (exit_after_message), &arg);
    }
  else if (g_str_equal (mode, "close-flush-exit"))
    {
      /* Posts N numbered messages and "bye", closes, flushes (the close
       * too) and exits at once: the order the processes guide gives. */
      msg_port_main_start (parent);
      for (guint64 i = 0; i < arg; i++)
        msg_port_main_post (parent, g_variant_new_uint64 (i), NULL);
      msg_port_main_post (parent, g_variant_new_string ("bye"), NULL);
      msg_port_main_close (parent);
      if (!msg_port_main_flush (parent, NULL, &error))
        g_error ("flush: %s", error->message);
      _exit (0);
    }
  else
    g_error ("unknown mode '%s'", mode);

  msg_port_main_start (parent);
  g_main_loop_run (loop);

  g_clear_object (&chain_b.to_c);
  g_clear_object (&fds_kept);
  g_main_loop_unref (loop);
  return 0;
}
