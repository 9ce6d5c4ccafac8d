/* port.c: MsgPortMain and MsgChannelMain within one thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "msg-test-utils.h"

static void
test_channel_ports (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = NULL, *port2 = NULL;

  g_object_get (channel, "port1", &port1, "port2", &port2, NULL);
  g_assert_true (MSG_IS_PORT_MAIN (port1));
  g_assert_true (MSG_IS_PORT_MAIN (port2));
  g_assert_true (port1 != port2);
  g_assert_true (port1 == msg_channel_main_get_port1 (channel));
  g_assert_true (port2 == msg_channel_main_get_port2 (channel));
  g_assert_false (msg_port_main_is_started (port1));
  g_assert_false (msg_port_main_is_closed (port1));
  g_assert_false (msg_port_main_is_neutered (port1));
  g_object_unref (port1);
  g_object_unref (port2);
}

static void
test_version (void)
{
  g_assert_cmpuint (msg_get_major_version (), ==, MSG_MAJOR_VERSION);
  g_assert_cmpuint (msg_get_minor_version (), ==, MSG_MINOR_VERSION);
  g_assert_cmpuint (msg_get_micro_version (), ==, MSG_MICRO_VERSION);
  g_assert_null (msg_check_version (MSG_MAJOR_VERSION, 0, 0));
  g_assert_nonnull (msg_check_version (MSG_MAJOR_VERSION + 1, 0, 0));
  g_assert_nonnull (msg_check_version (MSG_MAJOR_VERSION, MSG_MINOR_VERSION + 1, 0));
  g_assert_true (MSG_CHECK_VERSION (1, 0, 0));
  g_assert_false (MSG_CHECK_VERSION (99, 0, 0));
}

static void
test_post_receive (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port2);
  g_autoptr(GVariant) sent = g_variant_ref_sink (g_variant_new ("(si)", "hello", 42));
  g_autoptr(GError) error = NULL;

  g_test_summary ("A message arrives as the same GVariant, not a copy");

  msg_port_main_start (port2);
  g_assert_true (msg_port_main_post (port1, sent, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (rec->events->len, ==, 0);  /* nothing emitted from post() */

  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_true (msg_recorder_data (rec, 0) == sent);
  g_assert_cmpuint (msg_message_event_get_n_ports (g_ptr_array_index (rec->events, 0)), ==, 0);
  g_assert_null (msg_message_event_get_ports (g_ptr_array_index (rec->events, 0), NULL));

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
}

static void
test_post_null_and_floating (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port2);
  g_autoptr(GVariant) data_prop = NULL;
  GVariant *data;

  msg_port_main_start (port2);
  g_assert_true (msg_port_main_post (port1, NULL, NULL));
  g_assert_true (msg_port_main_post_message (port1, g_variant_new_uint32 (7), NULL, 0, NULL));
  msg_test_wait_until (NULL, rec->events->len == 2);

  g_assert_null (msg_recorder_data (rec, 0));
  g_object_get (g_ptr_array_index (rec->events, 0), "data", &data_prop, NULL);
  g_assert_null (data_prop);

  data = msg_recorder_data (rec, 1);
  g_assert_false (g_variant_is_floating (data));
  g_assert_cmpuint (g_variant_get_uint32 (data), ==, 7);
  g_object_get (g_ptr_array_index (rec->events, 1), "data", &data_prop, NULL);
  g_assert_true (data_prop == data);

  msg_port_main_close (port2);
  msg_test_wait_until (NULL, rec->n_close == 1);
}

static void
test_queued_until_start (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port2);

  for (guint i = 0; i < 100; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec->events->len, ==, 0);

  msg_port_main_start (port2);
  g_assert_true (msg_port_main_is_started (port2));
  msg_test_wait_until (NULL, rec->events->len == 100);
  for (guint i = 0; i < 100; i++)
    g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, i)), ==, i);

  msg_port_main_close (port2);
  msg_test_wait_until (NULL, rec->n_close == 1);
}

static void
test_both_directions (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec1 = msg_recorder_new (port1);
  g_autoptr(MsgRecorder) rec2 = msg_recorder_new (port2);

  msg_port_main_start (port1);
  msg_port_main_start (port2);
  for (guint i = 0; i < 50; i++)
    {
      msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
      msg_port_main_post (port2, g_variant_new_uint32 (1000 + i), NULL);
    }
  msg_test_wait_until (NULL, rec1->events->len == 50 && rec2->events->len == 50);
  for (guint i = 0; i < 50; i++)
    {
      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec2, i)), ==, i);
      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec1, i)), ==, 1000 + i);
    }

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec1->n_close == 1 && rec2->n_close == 1);
}

static void
test_start_twice (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port2);

  msg_port_main_post (port1, g_variant_new_uint32 (1), NULL);
  msg_port_main_start (port2);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, rec->events->len == 1);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec->events->len, ==, 1);

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec->n_close, ==, 1);
}

static void
test_close_delivers_first (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec1 = msg_recorder_new (port1);
  g_autoptr(MsgRecorder) rec2 = msg_recorder_new (port2);
  g_autoptr(GError) reason1 = NULL;
  g_autoptr(GError) reason2 = NULL;

  g_test_summary ("Messages posted before close() arrive before the peer's close, "
                  "and each end emits close exactly once");

  msg_port_main_start (port1);
  msg_port_main_start (port2);
  /* port1 has messages that reached it but were not dispatched yet. */
  for (guint i = 0; i < 10; i++)
    msg_port_main_post (port2, g_variant_new_uint32 (100 + i), NULL);
  for (guint i = 0; i < 10; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);
  g_assert_null (msg_port_main_get_close_reason (port1));
  msg_port_main_close (port1);
  g_assert_true (msg_port_main_is_closed (port1));

  /* Posting on a closed port drops the message and succeeds. */
  g_assert_true (msg_port_main_post (port1, g_variant_new_uint32 (999), NULL));

  msg_test_wait_until (NULL, rec1->n_close == 1 && rec2->n_close == 1);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec1->n_close, ==, 1);
  g_assert_cmpuint (rec2->n_close, ==, 1);
  g_assert_cmpuint (rec2->events->len, ==, 10);
  g_assert_cmpuint (rec2->n_messages_at_close, ==, 10);
  g_assert_cmpuint (rec1->events->len, ==, 10);
  g_assert_cmpuint (rec1->n_messages_at_close, ==, 10);
  for (guint i = 0; i < 10; i++)
    {
      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec2, i)), ==, i);
      g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec1, i)), ==, 100 + i);
    }

  reason1 = msg_port_main_get_close_reason (port1);
  reason2 = msg_port_main_get_close_reason (port2);
  g_assert_error (reason1, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);
  g_assert_error (reason2, MSG_PORT_ERROR, MSG_PORT_ERROR_PEER_CLOSED);
  g_assert_true (msg_port_main_is_closed (port2));

  /* Closing or starting again does nothing. */
  msg_port_main_close (port1);
  msg_port_main_close (port2);
  msg_port_main_start (port1);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec1->n_close, ==, 1);
  g_assert_cmpuint (rec2->n_close, ==, 1);
}

static void
test_close_unstarted (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec1 = msg_recorder_new (port1);
  g_autoptr(MsgRecorder) rec2 = msg_recorder_new (port2);
  g_autoptr(GError) reason = NULL;

  g_test_summary ("A port closed before it was started emits nothing, even if started later; "
                  "a port started after its peer went away delivers what was queued, then close");

  msg_port_main_post (port2, g_variant_new_uint32 (1), NULL);
  msg_port_main_post (port1, g_variant_new_uint32 (2), NULL);
  msg_port_main_post (port1, g_variant_new_uint32 (3), NULL);
  msg_port_main_close (port1);
  reason = msg_port_main_get_close_reason (port1);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);

  msg_port_main_start (port1);
  g_assert_false (msg_port_main_is_started (port1));
  msg_test_drain (NULL);
  g_assert_cmpuint (rec1->events->len + rec1->n_close, ==, 0);

  g_assert_true (msg_port_main_is_closed (port2));
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, rec2->n_close == 1);
  g_assert_cmpuint (rec2->events->len, ==, 2);
  g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec2, 0)), ==, 2);
  g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec2, 1)), ==, 3);
  g_assert_cmpuint (rec1->events->len + rec1->n_close, ==, 0);
}

static void
on_close_count (MsgPortMain *port,
                gpointer     data)
{
  (*(guint *) data)++;
}

static void
on_message_count (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         data)
{
  (*(guint *) data)++;
}

static void
test_lifetime_unref_unstarted (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  g_autoptr(MsgPortMain) port2 = g_object_ref (msg_channel_main_get_port2 (channel));
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port2);

  g_test_summary ("Dropping the last reference to an unstarted port disconnects its peer");

  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (5), NULL);
  msg_port_main_start (port2);
  g_object_unref (channel);  /* port1's only owner */

  msg_test_wait_until (NULL, rec->n_close == 1);
  g_assert_cmpuint (rec->n_messages_at_close, ==, 1);
}

static void
test_lifetime_started_keeps_itself (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  g_autoptr(MsgPortMain) port1 = g_object_ref (msg_channel_main_get_port1 (channel));
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  guint n_messages = 0, n_close = 0;

  g_test_summary ("A started port whose only owner is a connected handler keeps working, "
                  "and is freed once it is disconnected");

  g_signal_connect (port2, "message", G_CALLBACK (on_message_count), &n_messages);
  g_signal_connect (port2, "close", G_CALLBACK (on_close_count), &n_close);
  msg_port_main_start (port2);
  g_object_add_weak_pointer (G_OBJECT (port2), (gpointer *) &port2);
  g_object_unref (channel);
  g_assert_nonnull (port2);

  msg_port_main_post (port1, g_variant_new_uint32 (5), NULL);
  msg_test_wait_until (NULL, n_messages == 1);
  g_assert_nonnull (port2);

  msg_port_main_close (port1);
  msg_test_wait_until (NULL, n_close == 1);
  g_assert_null (port2);
}

typedef struct
{
  MsgPortMain *port1;
  MsgPortMain *port2;
  guint        n_received;
  guint        n_idle;
  guint        n_idle_at_first_message;
  gboolean     stop;
} PingPong;

static void
ping_pong_message (MsgPortMain     *port,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  PingPong *pp = user_data;

  if (pp->n_received++ == 0)
    pp->n_idle_at_first_message = pp->n_idle;
  if (!pp->stop)
    msg_port_main_post (port == pp->port1 ? pp->port1 : pp->port2,
                        msg_message_event_get_data (event), NULL);
}

static gboolean
ping_pong_idle (gpointer user_data)
{
  PingPong *pp = user_data;

  pp->n_idle++;
  return G_SOURCE_CONTINUE;
}

static void
test_dispatch_not_starving (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  PingPong pp = { 0, };
  GSource *idle;

  g_test_summary ("A message posted from a handler to a port on the same context is "
                  "delivered in a later dispatch, so other sources still run");

  pp.port1 = msg_channel_main_get_port1 (channel);
  pp.port2 = msg_channel_main_get_port2 (channel);
  g_signal_connect (pp.port1, "message", G_CALLBACK (ping_pong_message), &pp);
  g_signal_connect (pp.port2, "message", G_CALLBACK (ping_pong_message), &pp);
  msg_port_main_start (pp.port1);
  msg_port_main_start (pp.port2);

  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, ping_pong_idle, &pp, NULL);
  g_source_attach (idle, NULL);

  msg_port_main_post (pp.port1, g_variant_new_uint32 (0), NULL);
  msg_port_main_post (pp.port2, g_variant_new_uint32 (0), NULL);
  /* The ping-pong never ends by itself; the idle source must still run. */
  msg_test_wait_until (NULL, pp.n_idle >= 100);
  g_assert_cmpuint (pp.n_received, >=, 100);
  g_assert_cmpuint (pp.n_received, <=, 2 * (pp.n_idle + 1));

  pp.stop = TRUE;
  g_source_destroy (idle);
  g_source_unref (idle);
  msg_test_drain (NULL);
  msg_port_main_close (pp.port1);
  msg_test_drain (NULL);
}

typedef struct
{
  MsgPortMain *sender;
  guint        n_flood;
  guint        n_idle;
  guint        n_idle_at_go;
  guint        n_idle_at_first_flood;
  guint        n_flood_received;
  guint        n_wrong;
} Flood;

static gpointer
flood_thread (gpointer data)
{
  Flood *flood = data;

  for (guint i = 0; i < flood->n_flood; i++)
    g_assert_true (msg_port_main_post (flood->sender, g_variant_new_uint32 (i), NULL));
  return NULL;
}

static void
flood_message (MsgPortMain     *port,
               MsgMessageEvent *event,
               gpointer         user_data)
{
  Flood *flood = user_data;
  GVariant *data = msg_message_event_get_data (event);

  if (g_variant_is_of_type (data, G_VARIANT_TYPE_STRING))
    {
      /* The whole flood is queued before this handler returns. */
      flood->n_idle_at_go = flood->n_idle;
      g_thread_join (g_thread_new ("flood", flood_thread, flood));
      return;
    }
  if (flood->n_flood_received == 0)
    flood->n_idle_at_first_flood = flood->n_idle;
  if (g_variant_get_uint32 (data) != flood->n_flood_received)
    flood->n_wrong++;
  flood->n_flood_received++;
}

static gboolean
flood_idle (gpointer user_data)
{
  Flood *flood = user_data;

  flood->n_idle++;
  return G_SOURCE_CONTINUE;
}

static void
test_dispatch_flood_from_thread (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  Flood flood = { msg_channel_main_get_port1 (channel), 10000, 0, };
  GSource *idle;

  g_test_summary ("Guarantee 7 across threads: a flood posted from another thread while a "
                  "handler runs is delivered in a later dispatch, in order, and an idle "
                  "source on the same context runs in between");

  g_signal_connect (port2, "message", G_CALLBACK (flood_message), &flood);
  msg_port_main_start (port2);
  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, flood_idle, &flood, NULL);
  g_source_attach (idle, NULL);

  msg_port_main_post (flood.sender, g_variant_new_string ("go"), NULL);
  msg_test_wait_until (NULL, flood.n_flood_received == flood.n_flood);
  g_assert_cmpuint (flood.n_wrong, ==, 0);
  g_assert_cmpuint (flood.n_idle_at_first_flood, >, flood.n_idle_at_go);

  g_source_destroy (idle);
  g_source_unref (idle);
  msg_port_main_close (port2);
  msg_test_drain (NULL);
}

static void
on_message_close_self (MsgPortMain     *port,
                       MsgMessageEvent *event,
                       gpointer         user_data)
{
  MsgRecorder *rec = user_data;

  if (rec->events->len == 3)
    msg_port_main_close (port);
}

static void
test_close_from_handler (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  g_autoptr(MsgRecorder) rec1 = msg_recorder_new (port1);
  g_autoptr(MsgRecorder) rec2 = msg_recorder_new (port2);

  g_test_summary ("close() from a message handler: the messages that had reached "
                  "the port are still delivered, then close");

  g_signal_connect_after (port2, "message", G_CALLBACK (on_message_close_self), rec2);
  msg_port_main_start (port1);
  msg_port_main_start (port2);
  for (guint i = 0; i < 10; i++)
    msg_port_main_post (port1, g_variant_new_uint32 (i), NULL);

  msg_test_wait_until (NULL, rec2->n_close == 1 && rec1->n_close == 1);
  g_assert_cmpuint (rec2->n_messages_at_close, ==, 10);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec2->n_close, ==, 1);
}

/* Posts from another thread while the receiving context dispatches ------ */

typedef struct
{
  MsgPortMain *sender;
  GMutex       lock;
  GCond        cond;
  gboolean     posted;
  guint        n;
  guint        n_close;
} WhileDispatching;

static gpointer
post_from_thread (gpointer data)
{
  WhileDispatching *w = data;

  msg_port_main_post (w->sender, g_variant_new_uint32 (w->n), NULL);
  msg_mutex_lock (&w->lock);
  w->posted = TRUE;
  g_cond_signal (&w->cond);
  msg_mutex_unlock (&w->lock);
  return NULL;
}

/* Posts one message from a new thread and waits until it is posted. */
static void
post_from_other_thread (WhileDispatching *w)
{
  GThread *thread;

  w->posted = FALSE;
  thread = g_thread_new ("poster", post_from_thread, w);
  msg_mutex_lock (&w->lock);
  while (!w->posted)
    msg_cond_wait (&w->cond, &w->lock);
  msg_mutex_unlock (&w->lock);
  g_thread_join (thread);
}

static void
on_message_post_meanwhile (MsgPortMain     *port,
                           MsgMessageEvent *event,
                           gpointer         user_data)
{
  WhileDispatching *w = user_data;

  g_assert_cmpuint (g_variant_get_uint32 (msg_message_event_get_data (event)), ==, w->n);
  /* The first message's handler has another thread post the second. */
  if (w->n++ == 0)
    post_from_other_thread (w);
}

static void
on_close_post_meanwhile (MsgPortMain *port,
                         gpointer     user_data)
{
  WhileDispatching *w = user_data;

  w->n_close++;
}

static void
test_post_while_dispatching (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  WhileDispatching w = { msg_channel_main_get_port1 (channel), };
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);

  g_test_summary ("A message posted from another thread while the receiving context "
                  "dispatches arrives after the dispatch without a wake-up of its own; "
                  "one posted while the context waits in poll() wakes it");

  g_mutex_init (&w.lock);
  g_cond_init (&w.cond);
  g_signal_connect (port2, "message", G_CALLBACK (on_message_post_meanwhile), &w);
  g_signal_connect (port2, "close", G_CALLBACK (on_close_post_meanwhile), &w);
  msg_port_main_start (port2);
  msg_port_main_post (w.sender, g_variant_new_uint32 (0), NULL);

  msg_test_wait_until (NULL, w.n == 2);

  /* This thread waits in poll() now: the post must wake it. */
  {
    GThread *thread;

    w.posted = FALSE;
    thread = g_thread_new ("poster", post_from_thread, &w);
    msg_test_wait_until (NULL, w.n == 3);
    g_thread_join (thread);
  }

  msg_port_main_close (w.sender);
  msg_test_wait_until (NULL, w.n_close == 1);
  g_cond_clear (&w.cond);
  g_mutex_clear (&w.lock);
}

/* Message functions ------------------------------------------------------ */

typedef struct
{
  GPtrArray *events;         /* (element-type MsgMessageEvent) (owned) */
  guint      n_destroyed;
  gboolean   replace;        /* the function replaces itself with NULL */
} FuncRecord;

static void
record_message (MsgPortMain     *port,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  FuncRecord *record = user_data;

  /* The event may be kept: it must not be reused for the next message. */
  g_ptr_array_add (record->events, g_object_ref (event));
  if (record->replace)
    {
      msg_port_main_set_message_func (port, NULL, NULL, NULL);
      /* Its data outlives the call that replaced it. */
      g_assert_cmpuint (record->n_destroyed, ==, 0);
    }
}

static void
record_destroyed (gpointer user_data)
{
  FuncRecord *record = user_data;

  record->n_destroyed++;
}

static void
on_message_signal (MsgPortMain     *port,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  guint *n_signals = user_data;

  (*n_signals)++;
}

static guint64
record_number (FuncRecord *record,
               guint       i)
{
  return g_variant_get_uint64 (msg_message_event_get_data (g_ptr_array_index (record->events, i)));
}

/* Counts ::message on @port and has its messages go to @record instead. */
static void
record_instead_of_signal (MsgPortMain *port,
                          FuncRecord  *record,
                          guint       *n_signals)
{
  g_signal_connect (port, "message", G_CALLBACK (on_message_signal), n_signals);
  msg_port_main_set_message_func (port, record_message, record, record_destroyed);
}

static void
test_message_func (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  FuncRecord record = { g_ptr_array_new_with_free_func (g_object_unref), 0, FALSE };
  FuncRecord second = { g_ptr_array_new_with_free_func (g_object_unref), 0, FALSE };
  guint n_signals = 0;

  g_test_summary ("A message function set on a port gets every message, in order, instead "
                  "of ::message; replacing it destroys the old data; NULL brings the signal back");

  record_instead_of_signal (port2, &record, &n_signals);
  msg_port_main_start (port2);

  for (guint64 i = 0; i < 100; i++)
    msg_port_main_post (port1, g_variant_new_uint64 (i), NULL);
  msg_test_wait_until (NULL, record.events->len == 100);
  for (guint i = 0; i < 100; i++)
    g_assert_cmpuint (record_number (&record, i), ==, i);
  g_assert_cmpuint (n_signals, ==, 0);
  /* Each event was kept, so each is its own object. */
  g_assert_true (g_ptr_array_index (record.events, 0) != g_ptr_array_index (record.events, 1));

  /* Replacing: the old data is destroyed, at once. */
  msg_port_main_set_message_func (port2, record_message, &second, record_destroyed);
  g_assert_cmpuint (record.n_destroyed, ==, 1);
  msg_port_main_post (port1, g_variant_new_uint64 (100), NULL);
  msg_test_wait_until (NULL, second.events->len == 1);
  g_assert_cmpuint (record_number (&second, 0), ==, 100);
  g_assert_cmpuint (record.events->len, ==, 100);

  /* NULL: back to the signal. */
  msg_port_main_set_message_func (port2, NULL, NULL, NULL);
  g_assert_cmpuint (second.n_destroyed, ==, 1);
  msg_port_main_post (port1, g_variant_new_uint64 (101), NULL);
  msg_test_wait_until (NULL, n_signals == 1);
  g_assert_cmpuint (second.events->len, ==, 1);

  msg_port_main_close (port1);
  g_ptr_array_unref (record.events);
  g_ptr_array_unref (second.events);
}

static void
test_message_func_from_itself (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
  MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
  FuncRecord record = { g_ptr_array_new_with_free_func (g_object_unref), 0, TRUE };
  guint n_signals = 0;

  g_test_summary ("A message function that replaces itself takes effect from the next "
                  "message, in the same dispatch");

  record_instead_of_signal (port2, &record, &n_signals);
  for (guint64 i = 0; i < 3; i++)
    msg_port_main_post (port1, g_variant_new_uint64 (i), NULL);
  msg_port_main_start (port2);

  msg_test_wait_until (NULL, n_signals == 2);
  g_assert_cmpuint (record.events->len, ==, 1);
  g_assert_cmpuint (record_number (&record, 0), ==, 0);
  g_assert_cmpuint (record.n_destroyed, ==, 1);

  msg_port_main_close (port1);
  g_ptr_array_unref (record.events);
}

static void
test_message_func_disposed (void)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  MsgPortMain *port2 = g_object_ref (msg_channel_main_get_port2 (channel));
  FuncRecord record = { g_ptr_array_new_with_free_func (g_object_unref), 0, FALSE };

  g_test_summary ("A port's message function data is destroyed when the port is disposed, "
                  "and that of one set after dispose when it is finalized");

  msg_port_main_set_message_func (port2, record_message, &record, record_destroyed);
  g_object_unref (channel);
  g_assert_cmpuint (record.n_destroyed, ==, 0);
  g_object_run_dispose (G_OBJECT (port2));
  g_assert_cmpuint (record.n_destroyed, ==, 1);
  /* Set again after dispose: finalize destroys it. */
  msg_port_main_set_message_func (port2, record_message, &record, record_destroyed);
  g_object_unref (port2);
  g_assert_cmpuint (record.n_destroyed, ==, 2);
  g_ptr_array_unref (record.events);
}

static void
test_construct_without_channel (void)
{
  g_autoptr(MsgPortMain) port = g_object_new (MSG_TYPE_PORT_MAIN, NULL);
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgRecorder) rec = msg_recorder_new (port);
  g_autoptr(MsgRecorder) peer_rec = NULL;
  g_autoptr(GError) reason = NULL;
  g_autoptr(GError) error = NULL;
  MsgPortMain *transfer[1];

  g_test_summary ("A port made with g_object_new() (Msg.PortMain() in Python, new "
                  "Msg.PortMain() in GJS) is a valid, closed port: every call is the "
                  "documented no-op for a closed port, and finalizing it is fine "
                  "(the first call used to crash on its missing endpoint)");

  g_assert_true (msg_port_main_is_closed (port));
  g_assert_false (msg_port_main_is_started (port));
  g_assert_false (msg_port_main_is_neutered (port));
  reason = msg_port_main_get_close_reason (port);
  g_assert_error (reason, MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED);

  msg_port_main_start (port);
  g_assert_false (msg_port_main_is_started (port));
  g_assert_true (msg_port_main_post (port, g_variant_new_string ("dropped"), &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_flush (port, NULL, &error));
  g_assert_no_error (error);
  msg_port_main_close (port);
  msg_test_drain (NULL);
  g_assert_cmpuint (rec->events->len, ==, 0);
  g_assert_cmpuint (rec->n_close, ==, 0);

  /* Closed: it cannot be transferred... */
  transfer[0] = port;
  g_assert_false (msg_port_main_post_message (msg_channel_main_get_port1 (channel), NULL,
                                              transfer, 1, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_clear_error (&error);
  g_assert_false (msg_port_main_is_neutered (port));

  /* ...and what it is asked to carry is lost, as on any closed port: the
   * peer of a port it carries closes. */
  peer_rec = msg_recorder_new (msg_channel_main_get_port2 (channel));
  msg_port_main_start (msg_channel_main_get_port2 (channel));
  transfer[0] = msg_channel_main_get_port1 (channel);
  g_assert_true (msg_port_main_post_message (port, NULL, transfer, 1, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (transfer[0]));
  msg_test_wait_until (NULL, peer_rec->n_close == 1);
  g_assert_cmpuint (peer_rec->events->len, ==, 0);
}

static void
test_construct_channel_and_event (void)
{
  g_autoptr(MsgChannelMain) channel = g_object_new (MSG_TYPE_CHANNEL_MAIN, NULL);
  g_autoptr(MsgMessageEvent) event = g_object_new (MSG_TYPE_MESSAGE_EVENT, NULL);
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (channel));
  g_autoptr(GVariant) data = NULL;
  guint n_ports = 1;

  g_test_summary ("A channel and an event made with g_object_new() are valid: the "
                  "channel's ports are entangled, the event is empty");

  msg_port_main_start (msg_channel_main_get_port2 (channel));
  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_uint32 (7), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpuint (g_variant_get_uint32 (msg_recorder_data (rec, 0)), ==, 7);
  msg_port_main_close (msg_channel_main_get_port1 (channel));
  msg_test_wait_until (NULL, rec->n_close == 1);

  g_assert_null (msg_message_event_get_data (event));
  g_assert_null (msg_message_event_get_ports (event, &n_ports));
  g_assert_cmpuint (n_ports, ==, 0);
  g_assert_cmpuint (msg_message_event_get_n_ports (event), ==, 0);
  g_assert_null (msg_message_event_get_port (event, 0));
  g_assert_cmpuint (g_list_model_get_n_items (msg_message_event_get_port_list (event)), ==, 0);
  g_object_get (event, "data", &data, NULL);
  g_assert_null (data);
}

/* Programmer errors are CRITICALs (and %FALSE/%NULL), as everywhere in GLib;
 * none of them is reachable from a binding with valid types. */
static void
test_preconditions (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port = msg_channel_main_get_port1 (channel);
  GError *error = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_FAILED, "set");

  g_test_summary ("Programmer errors in C give a CRITICAL and a FALSE or NULL result, "
                  "and change nothing");

  g_test_expect_message ("Msg", G_LOG_LEVEL_CRITICAL, "*MSG_IS_PORT_MAIN*");
  g_assert_false (msg_port_main_post (NULL, NULL, NULL));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Msg", G_LOG_LEVEL_CRITICAL, "*transfer != NULL*");
  g_assert_false (msg_port_main_post_message (port, NULL, NULL, 2, NULL));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Msg", G_LOG_LEVEL_CRITICAL, "*error == NULL*");
  g_assert_false (msg_port_main_post (port, NULL, &error));
  g_test_assert_expected_messages ();
  g_clear_error (&error);

  g_test_expect_message ("Msg", G_LOG_LEVEL_CRITICAL, "*MSG_IS_MESSAGE_EVENT*");
  g_assert_null (msg_message_event_get_port (NULL, 0));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Msg", G_LOG_LEVEL_CRITICAL, "*G_IS_SUBPROCESS_LAUNCHER*");
  g_assert_null (msg_port_main_new_for_launcher (NULL, -1, NULL));
  g_test_assert_expected_messages ();

  g_assert_false (msg_port_main_is_closed (port));
}

static void
test_parent_port_invalid (void)
{
  /* Not 0, 1 or 2: under a test runner a standard stream may be a socket. */
  const char *values[] = { "abc", "-1", "3x", "99999999999", "987" };

  g_test_summary ("A process whose parent-port variable names no socket has no parent "
                  "port: NULL, no warning (the subprocesses run with fatal warnings)");

  for (guint i = 0; i < G_N_ELEMENTS (values); i++)
    {
      if (g_test_subprocess ())
        {
          const char *value = g_getenv ("MSG_TEST_PARENT_PORT_VALUE");

          if (value == NULL || !g_str_equal (value, values[i]))
            continue;
          g_log_set_always_fatal (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
          g_setenv (MSG_PARENT_PORT_ENV, value, TRUE);
          g_assert_null (msg_port_main_get_parent_port ());
          g_assert_null (g_getenv (MSG_PARENT_PORT_ENV));
          g_assert_null (msg_port_main_get_parent_port ());
          return;
        }
      else
        {
          /* The subprocess inherits the environment. */
          g_setenv ("MSG_TEST_PARENT_PORT_VALUE", values[i], TRUE);
          g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
          g_unsetenv ("MSG_TEST_PARENT_PORT_VALUE");
          g_test_trap_assert_passed ();
          g_test_trap_assert_stderr_unmatched ("*WARNING*");
        }
    }
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/channel/ports", test_channel_ports);
  g_test_add_func ("/version", test_version);
  g_test_add_func ("/port/construct/without-channel", test_construct_without_channel);
  g_test_add_func ("/port/construct/channel-and-event", test_construct_channel_and_event);
  g_test_add_func ("/port/preconditions", test_preconditions);
  g_test_add_func ("/port/parent-port/invalid", test_parent_port_invalid);
  g_test_add_func ("/port/post/receive", test_post_receive);
  g_test_add_func ("/port/post/null-and-floating", test_post_null_and_floating);
  g_test_add_func ("/port/post/queued-until-start", test_queued_until_start);
  g_test_add_func ("/port/post/both-directions", test_both_directions);
  g_test_add_func ("/port/start/twice", test_start_twice);
  g_test_add_func ("/port/close/delivers-first", test_close_delivers_first);
  g_test_add_func ("/port/close/unstarted", test_close_unstarted);
  g_test_add_func ("/port/close/from-handler", test_close_from_handler);
  g_test_add_func ("/port/lifetime/unref-unstarted", test_lifetime_unref_unstarted);
  g_test_add_func ("/port/lifetime/started-keeps-itself", test_lifetime_started_keeps_itself);
  g_test_add_func ("/port/dispatch/not-starving", test_dispatch_not_starving);
  g_test_add_func ("/port/dispatch/post-while-dispatching", test_post_while_dispatching);
  g_test_add_func ("/port/dispatch/flood-from-thread", test_dispatch_flood_from_thread);
  g_test_add_func ("/port/message-func/instead-of-signal", test_message_func);
  g_test_add_func ("/port/message-func/from-itself", test_message_func_from_itself);
  g_test_add_func ("/port/message-func/disposed", test_message_func_disposed);

  return g_test_run ();
}
