/* diagnostics.c: G_MESSAGES_DEBUG=msgport-glib, and the warning for a port
 * dropped with messages it was never started to receive
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "msg-test-utils.h"

/* A port's life: made, started, transferred over a socket-backed port (so
 * bridged to "another process" and maybe its socket leased), closed. */
static void
port_life_cycle (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *a, *b;
  MsgPortMain *moved = msg_channel_main_get_port2 (channel);
  MsgRecorder *rec_a, *rec_b;
  MsgRecorder *rec_port1;
  MsgPortMain *arrived;
  GError *error = NULL;

  msg_test_socket_ports (&a, &b);
  rec_a = msg_recorder_new (a);
  msg_port_main_start (a);
  rec_b = msg_recorder_new (b);
  msg_port_main_start (b);
  rec_port1 = msg_recorder_new (msg_channel_main_get_port1 (channel));
  msg_port_main_start (msg_channel_main_get_port1 (channel));

  g_assert_true (msg_port_main_post_message (a, g_variant_new_string ("carrier"), &moved, 1,
                                             &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, rec_b->events->len == 1);
  arrived = msg_message_event_get_port (g_ptr_array_index (rec_b->events, 0), 0);
  msg_port_main_post (arrived, g_variant_new_string ("back"), NULL);
  msg_test_wait_until (NULL, rec_port1->events->len == 1);

  msg_port_main_close (arrived);
  msg_test_wait_until (NULL, rec_port1->n_close == 1);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec_a->n_close == 1 && rec_b->n_close == 1);

  msg_recorder_free (rec_port1);
  msg_recorder_free (rec_b);
  msg_recorder_free (rec_a);
  g_object_unref (a);
  g_object_unref (b);
  g_object_unref (channel);
}

static void
test_debug_on (void)
{
  if (g_test_subprocess ())
    {
      port_life_cycle ();
      return;
    }

  g_test_summary ("G_MESSAGES_DEBUG=msgport-glib logs each step of a port's life in the "
                  "msgport-glib domain: made, started, transferred, bridged, closed "
                  "with its reason");

  /* GLib 2.74 has no way to give the trapped child an environment: it
   * inherits ours. */
  g_setenv ("G_MESSAGES_DEBUG", "msgport-glib", TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_unsetenv ("G_MESSAGES_DEBUG");
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: created (endpoint 0x*)*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: started in the context 0x*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: transferred with a message*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: endpoint 0x*: bridged to another process*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: endpoint 0x*: made of the socket*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: closed: The port was closed "
                             "(msg-port-error-quark 4)*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: closed: * (msg-port-error-quark 5)*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: closed: close() called before it "
                             "was started*");
  g_test_trap_assert_stdout ("*msgport-glib-DEBUG*: port 0x*: the last reference was dropped*");
  /* Not in the warnings' domain. */
  g_test_trap_assert_stdout_unmatched ("*Msg-DEBUG*");
}

static void
test_debug_off (void)
{
  if (g_test_subprocess ())
    {
      port_life_cycle ();
      return;
    }

  g_test_summary ("Without G_MESSAGES_DEBUG, or with other domains in it, nothing is logged");

  g_unsetenv ("G_MESSAGES_DEBUG");
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout_unmatched ("*msgport-glib*");
  g_test_trap_assert_stderr_unmatched ("*msgport-glib*");

  g_setenv ("G_MESSAGES_DEBUG", "Gtk", TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_unsetenv ("G_MESSAGES_DEBUG");
  g_test_trap_assert_passed ();
  g_test_trap_assert_stdout_unmatched ("*msgport-glib*");
}

/* The warning for a port dropped, never started, with messages queued. */
static void
test_unstarted_warning (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port1 = g_object_ref (msg_channel_main_get_port1 (channel));
  MsgPortMain *port2 = g_object_ref (msg_channel_main_get_port2 (channel));

  g_test_summary ("Dropping a port that was never started, with messages queued for it, "
                  "warns once, with their count");

  for (guint i = 0; i < 3; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  g_object_unref (channel);

  g_test_expect_message ("Msg", G_LOG_LEVEL_WARNING,
                         "A port that was never started (*) was dropped with 3 messages "
                         "queued for it, now lost: call msg_port_main_start()*");
  g_object_unref (port2);
  g_test_assert_expected_messages ();

  /* One message: the singular. */
  channel = msg_channel_main_new ();
  msg_port_main_post (msg_channel_main_get_port2 (channel), NULL, NULL);
  g_test_expect_message ("Msg", G_LOG_LEVEL_WARNING,
                         "*dropped with 1 message queued for it*");
  g_object_unref (channel);
  g_test_assert_expected_messages ();

  msg_port_main_close (port1);
  g_object_unref (port1);
}

static void
test_unstarted_no_warning (void)
{
  MsgChannelMain *channel;
  MsgPortMain *port;
  MsgPortMain *moved;
  MsgRecorder *rec;

  g_test_summary ("No warning for a port closed with close(), for one whose channel ended, "
                  "for one with nothing queued, or for one transferred away");

  /* close() first: what was queued is dropped on purpose. */
  channel = msg_channel_main_new ();
  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (1), NULL);
  msg_port_main_close (msg_channel_main_get_port2 (channel));
  g_object_unref (channel);

  /* The channel ended: the peer closed after posting. */
  channel = msg_channel_main_new ();
  port = g_object_ref (msg_channel_main_get_port2 (channel));
  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (1), NULL);
  msg_port_main_close (msg_channel_main_get_port1 (channel));
  g_object_unref (channel);
  g_assert_true (msg_port_main_is_closed (port));
  g_object_unref (port);

  /* Nothing queued. */
  channel = msg_channel_main_new ();
  g_object_unref (channel);

  /* Transferred with messages queued: they go with it; the handle left
   * behind holds none, and the port that arrives is started. */
  channel = msg_channel_main_new ();
  {
    MsgChannelMain *carrier = msg_channel_main_new ();
    MsgPortMain *arrived;

    rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
    msg_port_main_start (msg_channel_main_get_port2 (carrier));
    msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (1), NULL);
    moved = msg_channel_main_get_port2 (channel);
    msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL, &moved, 1, NULL);
    msg_test_wait_until (NULL, rec->events->len == 1);
    arrived = msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0);
    msg_port_main_close (arrived);
    msg_port_main_close (msg_channel_main_get_port1 (carrier));
    msg_test_wait_until (NULL, rec->n_close == 1);
    msg_recorder_free (rec);
    g_object_unref (carrier);
  }
  g_object_unref (channel);
  msg_test_drain (NULL);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/diagnostics/debug/on", test_debug_on);
  g_test_add_func ("/diagnostics/debug/off", test_debug_off);
  g_test_add_func ("/diagnostics/unstarted/warning", test_unstarted_warning);
  g_test_add_func ("/diagnostics/unstarted/no-warning", test_unstarted_no_warning);

  return g_test_run ();
}
