/* context-reads.c: a port's context reads its socket, and gives it back
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * White-box: the I/O thread leases a socket to the dispatcher of the
 * context its messages go to while that context waits in poll(), and takes
 * it back when the context stays busy. These tests check that the context
 * does read (recvmsg() on its thread), that what only the I/O thread may
 * handle (a port in a message) still arrives in order, that a context
 * blocked in a handler does not stop the socket from being read (a flush()
 * on the other end completes), that a handler running a main loop of the
 * same context gives the lease back instead of waking that loop again and
 * again, that closing the port ends the lease, and that a close frame the
 * context hands back is handled before the end of file that follows it.
 */

#include <errno.h>
#include <sys/socket.h>

#include <unistd.h>

#include "msg-test-utils.h"
#include "wire/msg-transport-private.h"
#include "wire/msg-wire-private.h"

static GThread *main_thread;
static gint main_thread_reads;  /* (atomic) */
static gint other_reads;        /* (atomic) */

static ssize_t
counting_recvmsg (int            fd,
                  struct msghdr *message,
                  int            flags)
{
  ssize_t n = recvmsg (fd, message, flags);

  if (n > 0)
    g_atomic_int_inc (g_thread_self () == main_thread ? &main_thread_reads : &other_reads);
  return n;
}

static const MsgSyscalls counting = {
  sendmsg,
  counting_recvmsg,
  socketpair,
};


/* Posts numbered messages on @a until the socket of @b (started on the
 * default context, recorded by @rec) is leased. */
static void
wait_for_lease (MsgPortMain *a,
                MsgRecorder *rec)
{
  for (guint i = 0; msg_transport_count_leases () == 0; i++)
    {
      guint before = rec->events->len;

      g_assert_cmpuint (i, <, 1000);
      msg_port_main_post (a, g_variant_new_string ("warm-up"), NULL);
      msg_test_wait_until (NULL, rec->events->len == before + 1);
    }
}

/* Two socket-backed ports, @b started on the default context and
 * recorded, its socket leased. */
static MsgRecorder *
leased_ports (MsgPortMain **a,
              MsgPortMain **b)
{
  MsgRecorder *rec;

  msg_test_socket_ports (a, b);
  rec = msg_recorder_new (*b);
  msg_port_main_start (*b);
  wait_for_lease (*a, rec);
  return rec;
}

static void
test_context_reads_used (void)
{
  MsgPortMain *a, *b, *moving, *moved;
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgRecorder) rec = NULL;
  g_autoptr(MsgRecorder) rec_moved = NULL;
  g_autoptr(MsgRecorder) rec_port1 = NULL;
  guint base, n = 2000;

  g_test_summary ("A port's context reads its socket while it waits in poll(); a message "
                  "carrying a port, which the I/O thread handles, keeps its place");

  main_thread = g_thread_self ();
  msg_transport_set_syscalls (&counting);
  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  rec_port1 = msg_recorder_new (msg_channel_main_get_port1 (channel));
  msg_port_main_start (b);
  msg_port_main_start (msg_channel_main_get_port1 (channel));

  wait_for_lease (a, rec);
  g_atomic_int_set (&main_thread_reads, 0);
  g_atomic_int_set (&other_reads, 0);

  /* One at a time, as in a conversation: the context reads each. */
  base = rec->events->len;
  for (guint i = 0; i < 20; i++)
    {
      msg_port_main_post (a, g_variant_new_uint32 (i), NULL);
      msg_test_wait_until (NULL, rec->events->len == base + i + 1);
    }
  g_assert_cmpint (g_atomic_int_get (&main_thread_reads), >, 0);
  g_test_message ("reads: %d on the main thread, %d elsewhere",
                  g_atomic_int_get (&main_thread_reads), g_atomic_int_get (&other_reads));

  /* Numbers, a port in the middle, numbers. */
  base = rec->events->len;
  for (guint i = 0; i < n; i++)
    {
      if (i == n / 2)
        {
          moving = msg_channel_main_get_port2 (channel);
          g_assert_true (msg_port_main_post_message (a, g_variant_new_uint32 (i), &moving, 1, NULL));
        }
      else
        msg_port_main_post (a, g_variant_new_uint32 (i), NULL);
    }
  msg_test_wait_until (NULL, rec->events->len == base + n);
  for (guint i = 0; i < n; i++)
    {
      MsgMessageEvent *event = g_ptr_array_index (rec->events, base + i);

      g_assert_cmpuint (g_variant_get_uint32 (msg_message_event_get_data (event)), ==, i);
      g_assert_cmpuint (msg_message_event_get_n_ports (event), ==, i == n / 2 ? 1 : 0);
    }

  moved = msg_message_event_get_port (g_ptr_array_index (rec->events, base + n / 2), 0);
  rec_moved = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_port_main_post (moved, g_variant_new_string ("through"), NULL);
  msg_test_wait_until (NULL, rec_port1->events->len == 1);

  /* The I/O thread handed the lease back for the port, and leases again. */
  wait_for_lease (a, rec);

  msg_transport_set_syscalls (NULL);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_port_main_close (moved);
  msg_test_wait_until (NULL, rec_port1->n_close == 1);
  msg_test_wait_polling (msg_transport_count_leases () == 0);
  g_object_unref (a);
  g_object_unref (b);
}

typedef struct
{
  MsgPortMain *a;
  guint        n;
  gboolean     flushed;
} Blocker;

/* Blocks the context that holds the lease: posts more than the socket
 * buffers hold and waits until it is all written, which needs the other
 * end read. */
static void
block_on_flush (MsgPortMain     *port,
                MsgMessageEvent *event,
                gpointer         data)
{
  Blocker *blocker = data;
  g_autofree guint8 *blob = NULL;

  if (blocker->flushed)
    return;
  blob = g_malloc0 (64 * 1024);
  for (guint i = 0; i < blocker->n; i++)
    msg_port_main_post (blocker->a, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, blob, 64 * 1024, 1), NULL);
  blocker->flushed = msg_port_main_flush (blocker->a, NULL, NULL);
}

static void
test_context_reads_watchdog (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  /* 4 MiB: more than the socket buffers hold, less than the port takes
   * before it is read again (read-ahead). */
  Blocker blocker = { NULL, 64, FALSE };
  guint base;

  g_test_summary ("A context that holds a lease and blocks (here in a handler that waits "
                  "for its own 4 MiB to be read) loses it: the I/O thread reads again");

  rec = leased_ports (&a, &b);

  blocker.a = a;
  g_signal_connect (b, "message", G_CALLBACK (block_on_flush), &blocker);
  base = rec->events->len;
  msg_port_main_post (a, g_variant_new_string ("block"), NULL);
  msg_test_wait_until (NULL, blocker.flushed);
  msg_test_wait_until (NULL, rec->events->len == base + 1 + blocker.n);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_object_unref (a);
  g_object_unref (b);
}

typedef struct
{
  MsgPortMain *a;
  guint        iterations;
  guint        leases_after;
  gboolean     done;
} Nester;

static gboolean
set_done (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Runs the port's own context from its handler, while messages arrive. */
static void
nest (MsgPortMain     *port,
      MsgMessageEvent *event,
      gpointer         data)
{
  Nester *nester = data;
  gboolean timed_out = FALSE;

  if (nester->done || !g_variant_is_of_type (msg_message_event_get_data (event), G_VARIANT_TYPE_STRING))
    return;
  nester->done = TRUE;
  for (guint i = 0; i < 100; i++)
    msg_port_main_post (nester->a, g_variant_new_uint32 (i), NULL);
  g_timeout_add (200, set_done, &timed_out);
  while (!timed_out)
    {
      g_main_context_iteration (NULL, TRUE);
      nester->iterations++;
    }
  nester->leases_after = msg_transport_count_leases ();
}

static void
test_context_reads_nested_loop (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec = NULL;
  Nester nester = { NULL, 0, 0, FALSE };
  guint base;

  g_test_summary ("A handler that runs its port's context while its socket is readable "
                  "gives the lease back: that loop is not woken again and again, and the "
                  "messages come after the handler returns, in order");

  rec = leased_ports (&a, &b);

  nester.a = a;
  g_signal_connect (b, "message", G_CALLBACK (nest), &nester);
  base = rec->events->len;
  msg_port_main_post (a, g_variant_new_string ("nest"), NULL);
  msg_test_wait_until (NULL, rec->events->len == base + 101);
  g_test_message ("%u iterations of the nested loop", nester.iterations);
  g_assert_cmpuint (nester.iterations, <, 100);
  g_assert_cmpuint (nester.leases_after, ==, 0);
  for (guint i = 0; i < 100; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, base + 1 + i)), ==, i);

  msg_port_main_close (b);
  msg_test_wait_polling (msg_port_main_is_closed (a));
  g_object_unref (a);
  g_object_unref (b);
}

static void
test_context_reads_close (void)
{
  MsgPortMain *a, *b;
  g_autoptr(MsgRecorder) rec_a = NULL;
  g_autoptr(MsgRecorder) rec_b = NULL;
  g_autoptr(GError) reason = NULL;

  g_test_summary ("Closing a port whose socket its context reads ends the lease, and the "
                  "close reaches the other end");

  msg_test_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (a);
  msg_port_main_start (b);
  wait_for_lease (a, rec_b);

  msg_port_main_close (b);
  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_b->n_close == 1);
  msg_test_wait_polling (msg_transport_count_leases () == 0);
  reason = msg_port_main_get_close_reason (a);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_object_unref (a);
  g_object_unref (b);
}

/* Appends the frame of @data (taken; NULL: a close frame) to @bytes. */
static void
append_frame (GByteArray *bytes,
              GVariant   *data)
{
  g_autoptr(MsgWireFrame) frame = msg_wire_frame_new (data != NULL ? MSG_WIRE_FRAME_MESSAGE
                                                                   : MSG_WIRE_FRAME_CLOSE,
                                                      data != NULL ? g_variant_ref_sink (data) : NULL, 0);
  g_autoptr(GArray) fds = g_array_new (FALSE, FALSE, sizeof (int));
  MsgWireEncoded encoded;

  g_assert_true (msg_wire_encode (frame, &encoded, NULL));
  msg_wire_encoded_append (&encoded, bytes, fds);
  msg_wire_encoded_clear (&encoded);
}

static void
test_context_reads_close_then_hang_up (void)
{
  g_test_summary ("A peer that sends a message and its close frame and hangs up at once: "
                  "the port gets the message, then close with PEER_CLOSED, not PEER_GONE, "
                  "although the context hands the close frame back to the I/O thread while "
                  "that thread hears the hang-up");

  for (guint round = 0; round < 100; round++)
    {
      g_autoptr(MsgRecorder) rec = NULL;
      g_autoptr(GByteArray) bytes = g_byte_array_new ();
      g_autoptr(GError) reason = NULL;
      MsgPortMain *port;
      int raw;

      msg_test_socket_port (&raw, &port);
      rec = msg_recorder_new (port);
      msg_port_main_start (port);
      for (guint i = 0; msg_transport_count_leases () == 0; i++)
        {
          g_autoptr(GByteArray) one = g_byte_array_new ();

          g_assert_cmpuint (i, <, 1000);
          append_frame (one, g_variant_new_uint32 (i));
          g_assert_cmpint (write (raw, one->data, one->len), ==, (gssize) one->len);
          msg_test_wait_until (NULL, rec->events->len == i + 1);
        }

      append_frame (bytes, g_variant_new_string ("last"));
      append_frame (bytes, NULL);
      g_assert_cmpint (write (raw, bytes->data, bytes->len), ==, (gssize) bytes->len);
      close (raw);

      msg_test_wait_until (NULL, rec->n_close == 1);
      g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, rec->events->len - 1), NULL), ==, "last");
      reason = msg_port_main_get_close_reason (port);
      g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
      g_clear_pointer (&rec, msg_recorder_free);
      g_object_unref (port);
      msg_test_wait_polling (msg_transport_count_leases () == 0);
    }
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/context-reads/used", test_context_reads_used);
  g_test_add_func ("/context-reads/watchdog", test_context_reads_watchdog);
  g_test_add_func ("/context-reads/nested-loop", test_context_reads_nested_loop);
  g_test_add_func ("/context-reads/close", test_context_reads_close);
  g_test_add_func ("/context-reads/close-then-hang-up", test_context_reads_close_then_hang_up);

  return g_test_run ();
}
