/* transfer.c: moving ports with messages, within one thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "msg-test-utils.h"

static MsgPortMain *
event_port (MsgRecorder *rec,
            guint        i,
            guint        j)
{
  MsgMessageEvent *event = g_ptr_array_index (rec->events, i);
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);

  g_assert_cmpuint (j, <, n_ports);
  g_assert_true (ports[j] == msg_message_event_get_port (event, j));
  return ports[j];
}

static void
test_transfer_basic (void)
{
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) a = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) b = msg_channel_main_new ();
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
  g_autoptr(MsgRecorder) rec_a1 = NULL;
  g_autoptr(MsgRecorder) rec_moved = NULL;
  MsgPortMain *transfer[2];
  MsgPortMain *moved_a2, *moved_b2;
  g_autoptr(GError) error = NULL;

  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  transfer[0] = msg_channel_main_get_port2 (a);
  transfer[1] = msg_channel_main_get_port2 (b);
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier),
                                             g_variant_new_string ("ports"),
                                             transfer, 2, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (transfer[0]));
  g_assert_true (msg_port_main_is_neutered (transfer[1]));

  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpuint (msg_message_event_get_n_ports (g_ptr_array_index (rec->events, 0)), ==, 2);
  moved_a2 = event_port (rec, 0, 0);
  moved_b2 = event_port (rec, 0, 1);
  g_assert_true (moved_a2 != transfer[0]);
  g_assert_false (msg_port_main_is_neutered (moved_a2));
  g_assert_false (msg_port_main_is_started (moved_a2));

  /* The moved port talks to the same peer, both ways. */
  rec_moved = msg_recorder_new (moved_a2);
  rec_a1 = msg_recorder_new (msg_channel_main_get_port1 (a));
  msg_port_main_start (moved_a2);
  msg_port_main_start (msg_channel_main_get_port1 (a));
  msg_port_main_post (msg_channel_main_get_port1 (a), g_variant_new_uint32 (1), NULL);
  msg_port_main_post (moved_a2, g_variant_new_uint32 (2), NULL);
  /* The neutered handle does nothing. */
  g_assert_true (msg_port_main_post (transfer[0], g_variant_new_uint32 (3), NULL));
  msg_port_main_start (transfer[0]);
  msg_port_main_close (transfer[0]);
  msg_test_wait_until (NULL, rec_moved->events->len == 1 && rec_a1->events->len == 1);
  g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_moved, 0)), ==, 1);
  g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_a1, 0)), ==, 2);

  msg_port_main_close (moved_a2);
  msg_port_main_close (moved_b2);
  msg_port_main_close (msg_channel_main_get_port1 (carrier));
  msg_test_wait_until (NULL, rec_a1->n_close == 1 && rec_moved->n_close == 1 && rec->n_close == 1);
  g_assert_cmpuint (rec_a1->events->len, ==, 1);
}

static void
test_transfer_queued_follow (gconstpointer data)
{
  gboolean started = GPOINTER_TO_INT (data);
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  MsgPortMain *sender = msg_channel_main_get_port1 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
  g_autoptr(MsgRecorder) rec_old = msg_recorder_new (moving);
  g_autoptr(MsgRecorder) rec_new = NULL;
  MsgPortMain *moved;

  g_test_summary ("Messages queued on a port when it is transferred, and those still "
                  "in flight to it, arrive at its new home in order; a started port "
                  "emits nothing more where it was");

  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  if (started)
    msg_port_main_start (moving);
  for (guint i = 0; i < 50; i++)
    msg_port_main_post (sender, g_variant_new_uint32 (i), NULL);
  /* Queued on a started port but not dispatched yet: they go with it. */
  msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL, &moving, 1, NULL);
  for (guint i = 50; i < 100; i++)
    msg_port_main_post (sender, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec->events->len == 1);
  moved = event_port (rec, 0, 0);
  for (guint i = 100; i < 150; i++)
    msg_port_main_post (sender, g_variant_new_uint32 (i), NULL);
  rec_new = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_test_wait_until (NULL, rec_new->events->len == 150);
  for (guint i = 0; i < 150; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_new, i)), ==, i);
  g_assert_cmpuint (rec_old->events->len + rec_old->n_close, ==, 0);

  msg_port_main_close (sender);
  msg_test_wait_until (NULL, rec_new->n_close == 1);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec_old->events->len + rec_old->n_close, ==, 0);
  msg_port_main_close (msg_channel_main_get_port1 (carrier));
  msg_test_wait_until (NULL, rec->n_close == 1);
}

typedef struct
{
  MsgPortMain *carrier;   /* posts the port away */
  guint        after;     /* after this many messages */
  guint        seen;
} Mover;

static void
move_away_in_handler (MsgPortMain     *port,
                      MsgMessageEvent *event,
                      gpointer         user_data)
{
  Mover *mover = user_data;
  g_autoptr(GError) error = NULL;

  if (++mover->seen == mover->after)
    {
      g_assert_true (msg_port_main_post_message (mover->carrier, NULL, &port, 1, &error));
      g_assert_no_error (error);
      g_assert_true (msg_port_main_is_neutered (port));
    }
  g_assert_cmpuint (mover->seen, <=, mover->after);
}

static void
test_transfer_from_handler (void)
{
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  MsgPortMain *sender = msg_channel_main_get_port1 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
  g_autoptr(MsgRecorder) rec_new = NULL;
  Mover mover = { msg_channel_main_get_port1 (carrier), 10, 0 };
  MsgPortMain *moved;

  g_test_summary ("A port transferred from its own handler in the middle of a batch "
                  "delivers the rest of the batch at its new home");

  g_signal_connect (moving, "message", G_CALLBACK (move_away_in_handler), &mover);
  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  for (guint i = 0; i < 30; i++)
    msg_port_main_post (sender, g_variant_new_uint32 (i), NULL);
  msg_port_main_start (moving);

  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpuint (mover.seen, ==, 10);
  moved = event_port (rec, 0, 0);
  rec_new = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_test_wait_until (NULL, rec_new->events->len == 20);
  for (guint i = 0; i < 20; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec_new, i)), ==, 10 + i);

  msg_port_main_close (moved);
  msg_port_main_close (msg_channel_main_get_port1 (carrier));
  msg_test_wait_until (NULL, rec_new->n_close == 1 && rec->n_close == 1);
}

typedef enum {
  BAD_SELF,
  BAD_DUPLICATE,
  BAD_NULL,
  BAD_TRANSFERRED,
  BAD_CLOSED,
} BadTransfer;

static const struct {
  const char  *path;
  BadTransfer  kind;
} bad_transfers[] = {
  { "/transfer/error/self", BAD_SELF },
  { "/transfer/error/duplicate", BAD_DUPLICATE },
  { "/transfer/error/null", BAD_NULL },
  { "/transfer/error/already-transferred", BAD_TRANSFERRED },
  { "/transfer/error/closed", BAD_CLOSED },
};

static void
test_transfer_error (gconstpointer data)
{
  BadTransfer kind = GPOINTER_TO_INT (data);
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) good = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) other = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) sink = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (ch));
  MsgPortMain *transfer[3];
  g_autoptr(GError) error = NULL;

  g_test_summary ("An invalid transfer list fails with DATA_CLONE, sends nothing and "
                  "neuters nothing");

  transfer[0] = msg_channel_main_get_port1 (good);
  switch (kind)
    {
    case BAD_SELF:
      transfer[1] = port1;
      break;
    case BAD_DUPLICATE:
      transfer[1] = transfer[0];
      break;
    case BAD_NULL:
      transfer[1] = NULL;
      break;
    case BAD_TRANSFERRED:
      transfer[1] = msg_channel_main_get_port1 (other);
      g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (sink), NULL,
                                                 &transfer[1], 1, NULL));
      break;
    case BAD_CLOSED:
      transfer[1] = msg_channel_main_get_port1 (other);
      msg_port_main_close (transfer[1]);
      break;
    default:
      g_assert_not_reached ();
    }
  transfer[2] = msg_channel_main_get_port2 (good);

  msg_port_main_start (msg_channel_main_get_port2 (ch));
  g_assert_false (msg_port_main_post_message (port1, g_variant_new_uint32 (1),
                                              transfer, 3, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_clear_error (&error);
  g_assert_false (msg_port_main_is_neutered (transfer[0]));
  g_assert_false (msg_port_main_is_neutered (transfer[2]));
  g_assert_false (msg_port_main_is_neutered (port1));

  /* The same errors come first on a closed port, too. */
  msg_port_main_close (port1);
  g_assert_false (msg_port_main_post_message (port1, g_variant_new_uint32 (1),
                                              transfer, 3, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_assert_false (msg_port_main_is_neutered (transfer[0]));

  msg_test_wait_until (NULL, rec->n_close == 1);
  g_assert_cmpuint (rec->events->len, ==, 0);
}

static void
test_transfer_doomed (void)
{
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) other = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  g_autoptr(MsgRecorder) rec1 = msg_recorder_new (port1);
  g_autoptr(MsgRecorder) rec2 = msg_recorder_new (port2);
  g_autoptr(MsgRecorder) rec_other = msg_recorder_new (msg_channel_main_get_port1 (other));
  MsgPortMain *transfer[2];
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) reason = NULL;

  g_test_summary ("Transferring a port's own peer: TRUE, the message is dropped, the "
                  "sender closes and the peer is neutered (HTML 'doomed')");

  msg_port_main_start (port1);
  msg_port_main_start (port2);
  msg_port_main_start (msg_channel_main_get_port1 (other));
  transfer[0] = msg_channel_main_get_port2 (other);
  transfer[1] = port2;
  g_assert_true (msg_port_main_post_message (port1, g_variant_new_uint32 (1),
                                             transfer, 2, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (port2));
  g_assert_true (msg_port_main_is_neutered (transfer[0]));
  g_assert_true (msg_port_main_is_closed (port1));

  msg_test_wait_until (NULL, rec1->n_close == 1 && rec_other->n_close == 1);
  reason = msg_port_main_get_close_reason (port1);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec2->events->len + rec2->n_close, ==, 0);
  g_assert_cmpuint (rec1->events->len, ==, 0);
}

static void
test_transfer_on_closed_port (void)
{
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) other = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  g_autoptr(MsgRecorder) rec_other = msg_recorder_new (msg_channel_main_get_port1 (other));
  g_autoptr(GError) error = NULL;

  g_test_summary ("A closed port drops the post; valid ports in its transfer list are "
                  "neutered and lost, so their peers close");

  msg_port_main_start (msg_channel_main_get_port1 (other));
  msg_port_main_close (port1);
  g_assert_true (msg_port_main_post_message (port1, NULL, &moving, 1, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (moving));
  msg_test_wait_until (NULL, rec_other->n_close == 1);
}

static void
test_transfer_neutered_sender (void)
{
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) other = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port1 (ch);
  MsgPortMain *transfer[2];
  g_autoptr(GError) error = NULL;

  g_test_summary ("Posting on a neutered port does nothing: its transfer list is "
                  "neither checked nor touched");

  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                             &moving, 1, NULL));
  transfer[0] = msg_channel_main_get_port1 (other);
  transfer[1] = NULL;
  g_assert_true (msg_port_main_post_message (moving, NULL, transfer, 2, &error));
  g_assert_no_error (error);
  g_assert_false (msg_port_main_is_neutered (transfer[0]));
  g_assert_false (msg_port_main_is_closed (transfer[0]));
}

static void
test_transfer_dropped_event_closes (void)
{
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port1 (ch));
  guint n_messages = 0;

  g_test_summary ("A port that arrives in an event nobody keeps is dropped, and its "
                  "peer emits close");

  g_signal_connect (msg_channel_main_get_port2 (carrier), "message",
                    G_CALLBACK (msg_test_count_message), &n_messages);
  msg_port_main_start (msg_channel_main_get_port1 (ch));
  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL, &moving, 1, NULL);
  msg_test_wait_until (NULL, rec->n_close == 1);
  g_assert_cmpuint (n_messages, ==, 1);
}

static void
test_transfer_disconnected_port (void)
{
  g_autoptr(MsgChannelMain) carrier = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) ch = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
  g_autoptr(MsgRecorder) rec_old = msg_recorder_new (moving);
  g_autoptr(MsgRecorder) rec_new = NULL;
  g_autoptr(GError) reason = NULL;
  MsgPortMain *moved;

  g_test_summary ("A port whose peer went away (close already emitted) can still be "
                  "transferred; it emits close once at its new home");

  msg_port_main_start (moving);
  msg_port_main_post (msg_channel_main_get_port1 (ch), g_variant_new_uint32 (1), NULL);
  msg_port_main_close (msg_channel_main_get_port1 (ch));
  msg_test_wait_until (NULL, rec_old->n_close == 1);

  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                             &moving, 1, NULL));
  msg_test_wait_until (NULL, rec->events->len == 1);
  moved = event_port (rec, 0, 0);
  rec_new = msg_recorder_new (moved);
  msg_port_main_start (moved);
  msg_test_wait_until (NULL, rec_new->n_close == 1);
  g_assert_cmpuint (rec_new->events->len, ==, 0);
  reason = msg_port_main_get_close_reason (moved);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  msg_port_main_close (msg_channel_main_get_port1 (carrier));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/transfer/basic", test_transfer_basic);
  g_test_add_data_func ("/transfer/queued-follow/unstarted", GINT_TO_POINTER (FALSE),
                        test_transfer_queued_follow);
  g_test_add_data_func ("/transfer/queued-follow/started", GINT_TO_POINTER (TRUE),
                        test_transfer_queued_follow);
  g_test_add_func ("/transfer/from-handler", test_transfer_from_handler);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_transfers); i++)
    g_test_add_data_func (bad_transfers[i].path, GINT_TO_POINTER (bad_transfers[i].kind),
                          test_transfer_error);
  g_test_add_func ("/transfer/doomed", test_transfer_doomed);
  g_test_add_func ("/transfer/on-closed-port", test_transfer_on_closed_port);
  g_test_add_func ("/transfer/neutered-sender", test_transfer_neutered_sender);
  g_test_add_func ("/transfer/dropped-event-closes", test_transfer_dropped_event_closes);
  g_test_add_func ("/transfer/disconnected-port", test_transfer_disconnected_port);

  return g_test_run ();
}
