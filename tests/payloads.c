/* payloads.c: GBytes payloads, in and out without copies
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdio.h>
#include <string.h>

#include "msg-test-utils.h"

/* What the manual documents: a GBytes goes in as an "ay" GVariant made
 * with g_variant_new_from_bytes(), and comes out with
 * g_variant_get_data_as_bytes(). */
static GVariant *
variant_from_bytes (GBytes *bytes)
{
  return g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE);
}

static GBytes *
patterned_bytes (gsize size)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (i * 7 + i / 4096);
  return g_bytes_new_take (data, size);
}

typedef struct
{
  GBytes   *bytes;   /* (owned) (nullable): of the last message */
  GThread  *thread;
  gint      closed;  /* (atomic) */
} Received;

static void
on_bytes_message (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Received *received = user_data;
  GVariant *data = msg_message_event_get_data (event);

  g_assert_true (g_variant_is_of_type (data, G_VARIANT_TYPE_BYTESTRING));
  g_clear_pointer (&received->bytes, g_bytes_unref);
  received->bytes = g_variant_get_data_as_bytes (data);
  received->thread = g_thread_self ();
}

static void
on_close (MsgPortMain *port,
          gpointer     user_data)
{
  Received *received = user_data;

  g_atomic_int_set (&received->closed, TRUE);
  /* The test may wait in another thread, on the default context. */
  g_main_context_wakeup (NULL);
}

static void
test_bytes_same_thread (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  GBytes *bytes = patterned_bytes (1024 * 1024);
  Received received = { NULL, NULL, FALSE };
  GError *error = NULL;

  g_test_summary ("In-process, a GBytes payload arrives as the very same memory: the "
                  "receiver's g_variant_get_data_as_bytes() points at the sender's data");

  g_signal_connect (port2, "message", G_CALLBACK (on_bytes_message), &received);
  msg_port_main_start (port2);
  g_assert_true (msg_port_main_post (port1, variant_from_bytes (bytes), &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, received.bytes != NULL);

  g_assert_true (g_bytes_get_data (received.bytes, NULL) == g_bytes_get_data (bytes, NULL));
  g_assert_true (g_bytes_equal (received.bytes, bytes));

  g_clear_pointer (&received.bytes, g_bytes_unref);
  msg_port_main_close (port1);
  msg_test_drain (NULL);
  g_bytes_unref (bytes);
  g_object_unref (channel);
}

static gboolean
worker_start (gpointer user_data)
{
  MsgPortMain *port = user_data;

  msg_port_main_start (port);
  return G_SOURCE_REMOVE;
}

static void
test_bytes_threads (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  MsgTestWorker *worker = msg_test_worker_new ("bytes");
  GBytes *bytes = patterned_bytes (4 * 1024 * 1024);
  Received received = { NULL, NULL, FALSE };
  GBytes *got;

  g_test_summary ("Between threads a GBytes payload is not copied either");

  g_signal_connect (port2, "message", G_CALLBACK (on_bytes_message), &received);
  g_signal_connect (port2, "close", G_CALLBACK (on_close), &received);
  msg_test_worker_invoke (worker, worker_start, port2);
  g_assert_true (msg_port_main_post (port1, variant_from_bytes (bytes), NULL));
  msg_port_main_close (port1);
  msg_test_wait_until (NULL, g_atomic_int_get (&received.closed));
  msg_test_worker_free (worker);

  got = g_steal_pointer (&received.bytes);
  g_assert_nonnull (got);
  g_assert_true (received.thread != g_thread_self ());
  g_assert_true (g_bytes_get_data (got, NULL) == g_bytes_get_data (bytes, NULL));

  g_bytes_unref (got);
  g_bytes_unref (bytes);
  g_object_unref (channel);
}

/* Whether @address lies in a mapping of a memfd the library made. */
static gboolean
address_in_memfd (gconstpointer address)
{
  FILE *maps = fopen ("/proc/self/maps", "r");
  char line[4096];
  gboolean found = FALSE;

  g_assert_nonnull (maps);
  while (!found && fgets (line, sizeof line, maps) != NULL)
    {
      unsigned long start, end;

      if (sscanf (line, "%lx-%lx", &start, &end) == 2 &&
          (guintptr) address >= start && (guintptr) address < end)
        found = strstr (line, "memfd:msgport-message") != NULL;
    }
  fclose (maps);
  return found;
}

static void
test_bytes_process_memfd (void)
{
  MsgTestChild child = { 0, };
  GBytes *bytes = patterned_bytes (16 * 1024 * 1024 + 5);
  Received received = { NULL, NULL, FALSE };
  MsgPortMain *port;
  GError *error = NULL;

  g_test_summary ("A GBytes payload of 16 MiB or more crosses to another process and back "
                  "in sealed memfds: the bytes that arrive are right, and they are the "
                  "mapped memfd, not a copy");

  msg_test_child_spawn (&child, "process-child", "echo", 0);
  port = g_object_ref (child.port);

  g_signal_connect (port, "message", G_CALLBACK (on_bytes_message), &received);
  msg_port_main_start (port);
  g_assert_true (msg_port_main_post (port, variant_from_bytes (bytes), &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, received.bytes != NULL);

  g_assert_true (g_bytes_equal (received.bytes, bytes));
  g_assert_true (address_in_memfd (g_bytes_get_data (received.bytes, NULL)));
  g_assert_false (address_in_memfd (g_bytes_get_data (bytes, NULL)));
  g_clear_pointer (&received.bytes, g_bytes_unref);

  msg_port_main_close (port);
  msg_test_child_wait (&child, 0);

  g_object_unref (port);
  g_bytes_unref (bytes);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/payload/bytes/same-thread", test_bytes_same_thread);
  g_test_add_func ("/payload/bytes/threads", test_bytes_threads);
  g_test_add_func ("/payload/bytes/process-memfd", test_bytes_process_memfd);

  return g_test_run ();
}
