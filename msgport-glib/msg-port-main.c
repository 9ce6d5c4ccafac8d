/* msg-port-main.c: one end of a message channel
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Over 1,000 lines, on purpose: this is the public type, and about half of
 * it is its reference documentation (gtk-doc and introspection annotations
 * next to each function, as GLib keeps them). The engine is elsewhere:
 * endpoints and queues (msg-endpoint.c), dispatch (msg-dispatcher.c), other
 * processes (wire/).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "msg-debug-private.h"
#include "msg-dispatcher-private.h"
#include "msg-message-event-private.h"
#include "msg-port-error.h"
#include "msg-port-main-private.h"
#include "wire/msg-transport-private.h"
#include "wire/msg-wire-private.h"

/**
 * SECTION:msg-port-main
 * @Title: MsgPortMain
 * @Short_description: one end of a message channel
 * @See_also: #MsgChannelMain, #MsgMessageEvent
 *
 * A #MsgPortMain is one end of a channel: what is posted on it with
 * msg_port_main_post_message() arrives at the other end, the port it is
 * entangled with, as a #MsgPortMain::message signal. It is GLib's version
 * of the DOM `MessagePort` and of Electron's `MessagePortMain`.
 *
 * Messages are #GVariant values (or %NULL). Within a process the same
 * #GVariant arrives, no copy is made; ports can be moved along with a
 * message by listing them in its transfer list, and the receiver gets new
 * #MsgPortMain objects entangled with the same peers.
 *
 * Messages are queued until msg_port_main_start() is called, which binds
 * the port to the thread-default #GMainContext of the calling thread: its
 * signals are emitted there and nowhere else. msg_port_main_post_message(),
 * msg_port_main_close() and g_object_unref() may be called from any thread.
 *
 * Per direction, messages arrive exactly once and in the order they were
 * posted, between threads too, and while ports move: what was queued on a
 * port, or still in flight to it, when it is transferred arrives at its
 * new home.
 *
 * msg_port_main_close() disconnects the channel: every message posted
 * before it still reaches the other end, which then emits
 * #MsgPortMain::close exactly once; the closing end emits ::close too, after
 * the messages that had already reached it. Dropping the last reference to
 * a port that is not started closes it; a started port holds a reference
 * on itself until it is closed, disconnected or transferred, so a port whose
 * only owner is a connected handler keeps working. It holds no reference on
 * its #GMainContext, as a #GSource holds none: when the context is
 * finalized, the port ends without emitting anything, with
 * %MSG_PORT_ERROR_CLOSED as its close reason, and its peer closes with
 * %MSG_PORT_ERROR_PEER_CLOSED.
 *
 * Ports also connect processes: msg_port_main_new_for_fd() makes a port of
 * one end of a connected `AF_UNIX` stream socket whose other end another
 * process holds as a port, and msg_port_main_new_for_launcher() hands a
 * port to a child process, which finds it with
 * msg_port_main_get_parent_port(). Everything works the same across
 * processes: messages are serialized #GVariant values, validated on
 * arrival, and ports in transfer lists travel as file descriptors. What a
 * peer process sends is untrusted: anything invalid closes that port, with
 * %MSG_PORT_ERROR_PROTOCOL as its close reason. All socket I/O happens on a
 * thread of the library's own, so it makes progress whatever the
 * application's main loops do; only the signals wait for the port's
 * context.
 *
 * Byte payloads travel without extra copies as `ay` values that wrap a
 * #GBytes: make the message with
 * `g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, bytes, TRUE)` and
 * take the payload out with g_variant_get_data_as_bytes(). Within a
 * process the receiver gets the very same memory (no copy at all, between
 * threads too); to another process the bytes are written to the socket
 * once, or, from 16 MiB on, put in a sealed memfd that the receiver maps,
 * and g_variant_get_data_as_bytes() there returns the mapped memory. (A
 * #GVariant made with g_variant_new_fixed_array() or from a list of
 * bytes copies the data into the #GVariant once.) From Python,
 * `GLib.Variant.new_from_bytes (GLib.VariantType ('ay'), GLib.Bytes (data),
 * True)` copies the Python `bytes` once into the #GBytes, and
 * `event.data.get_data_as_bytes ().get_data ()` copies once out of it;
 * from GJS, `new GLib.Bytes (uint8array)` copies once in, and
 * `event.data.get_data_as_bytes ().toArray ()` (or `event.data.deepUnpack ()`)
 * gives a new `Uint8Array`, a copy.
 *
 * `G_MESSAGES_DEBUG=msgport-glib` in the environment of a process logs
 * each step of its ports' lives (made, started, transferred, bridged to
 * another process, a socket leased to a context, closed and why) as
 * debug messages in the log domain `msgport-glib`; otherwise this costs
 * nothing. A port that was never started, nor closed, and is dropped
 * while its channel still works and messages are queued for it logs a
 * warning with their count: they are lost (the classic "forgot to call
 * msg_port_main_start()"). Close a port you do not mean to start.
 *
 * C code that handles many small messages can have them passed to a
 * function, set with msg_port_main_set_message_func(), instead of emitted
 * as #MsgPortMain::message: the same delivery, without the cost of a
 * signal emission (as the appsink element of GStreamer offers callbacks
 * next to its signals).
 */

struct _MsgPortMain
{
  GObject      parent_instance;

  MsgEndpoint *endpoint;   /* (owned): never changes; the handle is neutered
                            * once endpoint->port is no longer this object */

  /* msg_port_main_set_message_func(): set and read in the port's context
   * (or before it is started) only. */
  MsgPortMainMessageFunc message_func;      /* (nullable) */
  gpointer               message_data;
  GDestroyNotify         message_notify;    /* (nullable) */
  gboolean               in_message_func;   /* message_func runs */
  GDestroyNotify         running_notify;    /* (nullable): of the function that
                                             * runs, replaced meanwhile: called
                                             * once it returns */
  gpointer               running_data;

  /* msg_port_main_receive_async(): the pending receives, oldest first,
   * all of one #GMainContext (their #GTask's). Protected by
   * endpoint->lock; only that context's thread takes tasks out, so that
   * an item the dispatcher popped for a receive always finds one (see
   * msg_port_main_receive_emit()). While it is not empty the endpoint is
   * bound to the dispatcher of that context with
   * msg_port_main_receive_emit(), without being started, and holds a
   * reference on this handle, as a started one does. */
  GQueue                 receives;
  /* (owned) (nullable): protected by endpoint->lock: the dispatcher of
   * the last receive (an acquired reference), kept so that a loop of
   * receives does not make and destroy a dispatcher for each message on
   * a context where nothing else keeps one; let go at dispose. */
  MsgDispatcher         *receive_dispatcher;
  gint                   priority;          /* (atomic): of its dispatcher */
  /* Flow control: what notify last said; in the port's context only. */
  gboolean               notified_writable;
  guint64                notified_messages;
  guint64                notified_bytes;
};

enum {
  PROP_0,
  PROP_PRIORITY,
  PROP_HIGH_WATER_MARK,
  PROP_BUFFERED_AMOUNT,
  PROP_BUFFERED_MESSAGES,
  PROP_WRITABLE,
  PROP_MESSAGES_SENT,
  PROP_BYTES_SENT,
  PROP_MESSAGES_RECEIVED,
  PROP_BYTES_RECEIVED,
  PROP_QUEUED_MESSAGES,
  PROP_MAX_QUEUED_MESSAGES,
  PROP_KEEP_ALIVE_INTERVAL,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_MESSAGE,
  SIGNAL_CLOSE,
  SIGNAL_DRAIN,
  N_SIGNALS
};

static guint signals[N_SIGNALS];


G_DEFINE_FINAL_TYPE (MsgPortMain, msg_port_main, G_TYPE_OBJECT)

/**
 * msg_port_error_quark:
 *
 * The error domain of msgport-glib.
 *
 * Returns: the #GQuark of %MSG_PORT_ERROR
 * Since: 1.0
 */
GQuark
msg_port_error_quark (void)
{
  /* G_DEFINE_QUARK() caches the quark in a plain static, which two threads
   * may write at once the first time (the I/O thread's first error while
   * a port is disposed, say): a data race, which TSan reports. */
  static gint quark = 0;  /* (atomic) */
  GQuark q = (GQuark) g_atomic_int_get (&quark);

  if (G_UNLIKELY (q == 0))
    {
      q = g_quark_from_static_string ("msg-port-error-quark");
      g_atomic_int_set (&quark, (gint) q);
    }
  return q;
}

static GError *
new_closed_reason (void)
{
  return g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                              "The port was closed");
}

static void
msg_port_main_clear_message_func (MsgPortMain *self)
{
  GDestroyNotify notify = g_steal_pointer (&self->message_notify);
  gpointer data = g_steal_pointer (&self->message_data);

  self->message_func = NULL;
  if (notify != NULL)
    notify (data);
}

static void
msg_port_main_dispose (GObject *object)
{
  MsgPortMain *self = MSG_PORT_MAIN (object);
  MsgEndpoint *endpoint = self->endpoint;
  MsgDispatcher *receive_dispatcher;
  gboolean owner;
  guint n_lost = 0;

  /* A bound endpoint holds a reference on us, so we get here only when the
   * port was never started, has ended, or was transferred away. */
  msg_mutex_lock (&endpoint->lock);
  owner = endpoint->port == self;
  if (owner)
    {
      endpoint->port = NULL;
      /* Messages reached a port nobody started or closed, on a channel
       * that still works: the classic "forgot to call start()". A port
       * whose channel ended holds no conversation to lose. Once per
       * port: this handle owns the endpoint no more. */
      if (!endpoint->started && !endpoint->closed && !endpoint->ended)
        n_lost = endpoint->queue.length;
    }
  msg_mutex_unlock (&endpoint->lock);

  if (n_lost > 0)
    g_warning ("A port that was never started (%p) was dropped with %u message%s "
               "queued for it, now lost: call msg_port_main_start() to receive a "
               "port's messages, or msg_port_main_close() to drop them",
               (gpointer) self, n_lost, n_lost == 1 ? "" : "s");
  if (owner)
    {
      MSG_DEBUG ("port %p: the last reference was dropped; the port ends if it had not",
                 (gpointer) self);
      msg_endpoint_discard (endpoint);
    }

  msg_mutex_lock (&endpoint->lock);
  receive_dispatcher = g_steal_pointer (&self->receive_dispatcher);
  msg_mutex_unlock (&endpoint->lock);
  if (receive_dispatcher != NULL)
    msg_dispatcher_release (receive_dispatcher);

  msg_port_main_clear_message_func (self);

  G_OBJECT_CLASS (msg_port_main_parent_class)->dispose (object);
}

static void
msg_port_main_finalize (GObject *object)
{
  MsgPortMain *self = MSG_PORT_MAIN (object);

  /* Set again after dispose, by a weak reference callback, say. */
  msg_port_main_clear_message_func (self);
  if (self->receive_dispatcher != NULL)
    msg_dispatcher_release (g_steal_pointer (&self->receive_dispatcher));

  g_clear_pointer (&self->endpoint, msg_endpoint_unref);

  G_OBJECT_CLASS (msg_port_main_parent_class)->finalize (object);
}

/* The va_list marshaller of ::message for C handlers. GLib's own
 * (g_cclosure_marshal_VOID__OBJECTv()) takes a reference on the event for
 * the call, in case a handler drops the last one; the dispatcher holds a
 * reference on every event it emits for the whole emission, so that pair
 * of atomic operations is saved on every message. Handlers in other
 * languages go through the #GValue marshaller as before. */
static void
msg_port_main_marshal_message_v (GClosure *closure,
                                 GValue   *return_value,
                                 gpointer  instance,
                                 va_list   args,
                                 gpointer  marshal_data,
                                 int       n_params,
                                 GType    *param_types)
{
  typedef void (*MessageFunc) (gpointer instance,
                               gpointer event,
                               gpointer user_data);
  GCClosure *cc = (GCClosure *) closure;
  MessageFunc callback;
  gpointer data1, data2;
  gpointer event;
  va_list args_copy;

  G_VA_COPY (args_copy, args);
  event = va_arg (args_copy, gpointer);
  va_end (args_copy);

  if (G_CCLOSURE_SWAP_DATA (closure))
    {
      data1 = closure->data;
      data2 = instance;
    }
  else
    {
      data1 = instance;
      data2 = closure->data;
    }
  callback = (MessageFunc) (marshal_data != NULL ? marshal_data : cc->callback);

  callback (data1, event, data2);
}

static void
msg_port_main_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  MsgPortMain *self = MSG_PORT_MAIN (object);

  switch (prop_id)
    {
    case PROP_PRIORITY:
      g_value_set_int (value, msg_port_main_get_priority (self));
      break;

    case PROP_HIGH_WATER_MARK:
      g_value_set_uint64 (value, msg_port_main_get_high_water_mark (self));
      break;
    case PROP_KEEP_ALIVE_INTERVAL:
      g_value_set_uint (value, msg_port_main_get_keep_alive_interval (self));
      break;
    case PROP_BUFFERED_AMOUNT:
      g_value_set_uint64 (value, msg_port_main_get_buffered_amount (self));
      break;
    case PROP_BUFFERED_MESSAGES:
      g_value_set_uint64 (value, msg_port_main_get_buffered_messages (self));
      break;
    case PROP_WRITABLE:
      g_value_set_boolean (value, msg_port_main_is_writable (self));
      break;
    case PROP_MESSAGES_SENT:
      g_value_set_uint64 (value, msg_port_main_get_messages_sent (self));
      break;
    case PROP_BYTES_SENT:
      g_value_set_uint64 (value, msg_port_main_get_bytes_sent (self));
      break;
    case PROP_MESSAGES_RECEIVED:
      g_value_set_uint64 (value, msg_port_main_get_messages_received (self));
      break;
    case PROP_BYTES_RECEIVED:
      g_value_set_uint64 (value, msg_port_main_get_bytes_received (self));
      break;
    case PROP_QUEUED_MESSAGES:
      g_value_set_uint64 (value, msg_port_main_get_queued_messages (self));
      break;
    case PROP_MAX_QUEUED_MESSAGES:
      g_value_set_uint64 (value, msg_port_main_get_max_queued_messages (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
msg_port_main_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  MsgPortMain *self = MSG_PORT_MAIN (object);

  switch (prop_id)
    {
    case PROP_PRIORITY:
      msg_port_main_set_priority (self, g_value_get_int (value));
      break;

    case PROP_HIGH_WATER_MARK:
      msg_port_main_set_high_water_mark (self, g_value_get_uint64 (value));
      break;
    case PROP_KEEP_ALIVE_INTERVAL:
      msg_port_main_set_keep_alive_interval (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
msg_port_main_class_init (MsgPortMainClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = msg_port_main_dispose;
  object_class->finalize = msg_port_main_finalize;
  object_class->get_property = msg_port_main_get_property;
  object_class->set_property = msg_port_main_set_property;

  /**
   * MsgPortMain:priority:
   *
   * The priority of the #GSource that dispatches the port's messages (and
   * its #MsgPortMain::close, and the completions of
   * msg_port_main_receive_async()) in its #GMainContext, such as
   * %G_PRIORITY_HIGH or %G_PRIORITY_DEFAULT_IDLE. Ports of one context
   * with the same priority share one source; each other priority in use
   * adds one. Of two ready ports of one context, the one with the higher
   * priority (the lower number) is dispatched first.
   *
   * It is read when the port is bound to its context: by
   * msg_port_main_start(), or by a receive when none is pending. Set it
   * before, or in the thread of the port's context, where a started port
   * takes it at once (see msg_port_main_set_priority()). The priority
   * belongs to this handle: a port that arrives in a message has the
   * default again.
   *
   * Whatever the priority, one dispatch delivers at most a bounded batch
   * of one port's messages (256), so that a port with a backlog lets
   * other sources of its context run in between.
   *
   * Since: 1.2
   */
  properties[PROP_PRIORITY] =
    g_param_spec_int ("priority", NULL, NULL,
                      G_MININT, G_MAXINT, G_PRIORITY_DEFAULT,
                      G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:high-water-mark:
   *
   * Flow control: the bytes of message data (their serialized size, see
   * #MsgPortMain:buffered-amount) that may be buffered on this port before
   * #MsgPortMain:writable goes %FALSE. 0, the default, turns flow control
   * off. The low-water mark, below which the port becomes writable again
   * and emits #MsgPortMain::drain, is half of it. The mark travels with
   * the port when it is transferred.
   *
   * Posting never blocks and never drops because of the mark: above it
   * msg_port_main_post_message() still queues the message.
   *
   * Since: 1.2
   */
  properties[PROP_HIGH_WATER_MARK] =
    g_param_spec_uint64 ("high-water-mark", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:buffered-amount:
   *
   * The bytes of message data posted on this port that the other end has
   * not taken yet: its #MsgPortMain::message handlers (or its message
   * function) have not been called with them. A message counts the size of
   * its serialized data (g_variant_get_size(); 0 for a %NULL message),
   * whatever the topology; across processes the other end acknowledges what
   * it took, so the count includes what is still in the sockets.
   *
   * Read it at any time, from any thread. #GObject::notify is emitted in
   * the port's context (it must be started) when the other end takes
   * messages, once per batch, and only while a high-water mark is set; with
   * no mark it is not emitted, so that counting costs nothing more than two
   * atomic additions per message. When the channel ends it drops to 0.
   *
   * Since: 1.2
   */
  properties[PROP_BUFFERED_AMOUNT] =
    g_param_spec_uint64 ("buffered-amount", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:buffered-messages:
   *
   * Like #MsgPortMain:buffered-amount, in messages.
   *
   * Since: 1.2
   */
  properties[PROP_BUFFERED_MESSAGES] =
    g_param_spec_uint64 ("buffered-messages", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:writable:
   *
   * %FALSE while the port's #MsgPortMain:buffered-amount is at or above
   * its #MsgPortMain:high-water-mark and has not yet fallen back below
   * half of it; %TRUE otherwise (always, with no mark). It goes %FALSE
   * with the post that reaches the mark, and %TRUE again when the other
   * end takes enough, or the channel ends.
   *
   * #GObject::notify is emitted in the port's context, if it is started,
   * once the change reaches it (so the value read in the handler may have
   * changed again meanwhile).
   *
   * Since: 1.2
   */
  properties[PROP_WRITABLE] =
    g_param_spec_boolean ("writable", NULL, NULL, TRUE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:messages-sent:
   *
   * Counter: the messages posted on this port that went to its peer (not
   * those dropped because the port was closed or disconnected), over the
   * life of the port, including the time before it was transferred here.
   * Counters never emit #GObject::notify; read them when needed.
   *
   * Since: 1.2
   */
  properties[PROP_MESSAGES_SENT] =
    g_param_spec_uint64 ("messages-sent", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:bytes-sent:
   *
   * Counter: the bytes of message data of #MsgPortMain:messages-sent.
   * No notify.
   *
   * Since: 1.2
   */
  properties[PROP_BYTES_SENT] =
    g_param_spec_uint64 ("bytes-sent", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:messages-received:
   *
   * Counter: the messages this port's handlers (or message function)
   * took, over the life of the port. Updated once per batch of messages,
   * after the batch. No notify.
   *
   * Since: 1.2
   */
  properties[PROP_MESSAGES_RECEIVED] =
    g_param_spec_uint64 ("messages-received", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:bytes-received:
   *
   * Counter: the bytes of message data of #MsgPortMain:messages-received.
   * No notify.
   *
   * Since: 1.2
   */
  properties[PROP_BYTES_RECEIVED] =
    g_param_spec_uint64 ("bytes-received", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:queued-messages:
   *
   * Counter: the messages (and the close, once it came) waiting on this
   * port now for its handlers: arrived, not emitted yet. No notify.
   *
   * Since: 1.2
   */
  properties[PROP_QUEUED_MESSAGES] =
    g_param_spec_uint64 ("queued-messages", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:max-queued-messages:
   *
   * Counter: the most #MsgPortMain:queued-messages has ever been. No
   * notify.
   *
   * Since: 1.2
   */
  properties[PROP_MAX_QUEUED_MESSAGES] =
    g_param_spec_uint64 ("max-queued-messages", NULL, NULL,
                         0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgPortMain:keep-alive-interval:
   *
   * For a port whose other end is in another process: how often, in
   * milliseconds, this process checks that the other one is alive; 0, the
   * default, turns it off and costs nothing. With an interval set, the
   * library's I/O thread pings the other process every interval, and the
   * port closes with %MSG_PORT_ERROR_KEEP_ALIVE_TIMEOUT once nothing at all
   * came from it for two intervals (so within three): it was stopped
   * (`SIGSTOP`, a debugger), or its msgport-glib I/O thread is stuck. The other process
   * answers from its own I/O thread, so a peer whose main loop is merely
   * busy, or that takes its messages slowly, is not declared dead. Its
   * library must speak version 2 of the wire format (any msgport-glib from
   * 1.2 on does). Intervals below 10 ms count as 10 ms.
   *
   * The interval belongs to the channel's socket: it stays when the port
   * moves to another thread, and does not go with it to another process.
   * On a port whose other end is in this process it is kept and does
   * nothing.
   *
   * Since: 1.2
   */
  properties[PROP_KEEP_ALIVE_INTERVAL] =
    g_param_spec_uint ("keep-alive-interval", NULL, NULL,
                       0, G_MAXUINT, 0,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * MsgPortMain::drain:
   * @self: the port
   *
   * Flow control: emitted in the port's context (it must be started) when
   * its #MsgPortMain:buffered-amount, after having reached the
   * #MsgPortMain:high-water-mark, fell back below the low-water mark, half
   * the high-water mark: the port is writable again. Emitted after
   * #GObject::notify for #MsgPortMain:writable, once however many times
   * it became writable since the last emission, and not if it reached the
   * mark again by then (posts from another thread, or from the callback
   * of msg_port_main_wait_writable_async(), which may run first). Not
   * emitted when the channel ends.
   *
   * Since: 1.2
   */
  signals[SIGNAL_DRAIN] =
    g_signal_new ("drain",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);

  /**
   * MsgPortMain::message:
   * @self: the port that received the message
   * @event: the message and the ports transferred with it
   *
   * Emitted for each message that arrives, in the order they were posted,
   * in the #GMainContext the port was started in.
   *
   * Ports in @event are not started; keep a reference on them (the event
   * owns the ones it holds) and start them in the thread that should
   * receive their messages. Keep @event itself with g_object_ref(): once
   * the handlers return, an event nobody holds a reference on may be used
   * again for a later message (see #MsgMessageEvent).
   *
   * Not emitted while a function set with msg_port_main_set_message_func()
   * receives the messages instead. Only the port emits this signal: its
   * C marshaller takes no reference on @event for the call.
   *
   * Since: 1.0
   */
  signals[SIGNAL_MESSAGE] =
    g_signal_new ("message",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL,
                  g_cclosure_marshal_VOID__OBJECT,
                  G_TYPE_NONE, 1, MSG_TYPE_MESSAGE_EVENT);
  g_signal_set_va_marshaller (signals[SIGNAL_MESSAGE], G_TYPE_FROM_CLASS (klass),
                              msg_port_main_marshal_message_v);

  /**
   * MsgPortMain::close:
   * @self: the port
   *
   * Emitted once, after every message that had reached the port, when the
   * channel is disconnected: the other end was closed or dropped, its
   * process went away, or msg_port_main_close() was called on this port.
   * msg_port_main_get_close_reason() says which.
   *
   * Since: 1.0
   */
  signals[SIGNAL_CLOSE] =
    g_signal_new ("close",
                  G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 0);
}

/* The endpoint msg_port_main_new_for_endpoint() hands to the instance it
 * constructs; %NULL while anybody else constructs one. */
static __thread MsgEndpoint *endpoint_for_init;  /* (owned) (nullable) */

static void
msg_port_main_init (MsgPortMain *self)
{
  MsgEndpoint *endpoint = g_steal_pointer (&endpoint_for_init);

  if (endpoint == NULL)
    {
      /* g_object_new() from C, Msg.PortMain() in Python, new Msg.PortMain()
       * in GJS: a port entangled with nothing. The DOM refuses such a
       * port; GObject construction cannot fail, so it is a valid object
       * that is closed from the start, on which every call is the
       * documented no-op for a closed port. */
      endpoint = msg_endpoint_new ();
      endpoint->closed = TRUE;
      endpoint->ended = TRUE;
      endpoint->close_reason = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                                    "The port was constructed without "
                                                    "a channel, and is closed");
    }

  self->endpoint = endpoint;
  self->priority = G_PRIORITY_DEFAULT;
  g_queue_init (&self->receives);
  self->notified_writable = TRUE;
  msg_mutex_lock (&endpoint->lock);
  g_assert (endpoint->port == NULL);
  endpoint->port = self;
  endpoint->started = FALSE;
  msg_mutex_unlock (&endpoint->lock);

  MSG_DEBUG ("port %p: created (endpoint %p)", (gpointer) self, (gpointer) endpoint);
}

/* Wraps @endpoint (whose reference is taken) in a new handle. */
MsgPortMain *
msg_port_main_new_for_endpoint (MsgEndpoint *endpoint)
{
  g_assert (endpoint_for_init == NULL);
  endpoint_for_init = endpoint;

  return g_object_new (MSG_TYPE_PORT_MAIN, NULL);
}

MsgEndpoint *
msg_port_main_get_endpoint (MsgPortMain *self)
{
  return self->endpoint;
}

/* Emits the notifications of flow control that are due, and ::drain, in
 * @self's context. */
static void
msg_port_main_emit_flow (MsgPortMain *self)
{
  MsgEndpoint *endpoint = self->endpoint;
  guint64 n_messages, n_bytes;
  gboolean writable;
  gboolean owner;
  guint drains = 0;

  msg_mutex_lock (&endpoint->lock);
  owner = endpoint->port == self;
  if (owner)
    {
      drains = endpoint->flow_drains;
      endpoint->flow_drains = 0;
    }
  msg_mutex_unlock (&endpoint->lock);

  if (!owner)
    return;

  writable = !g_atomic_int_get (&endpoint->flow_blocked);
  msg_endpoint_get_buffered (endpoint, &n_messages, &n_bytes);

  g_object_freeze_notify (G_OBJECT (self));
  if (n_bytes != self->notified_bytes)
    {
      self->notified_bytes = n_bytes;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BUFFERED_AMOUNT]);
    }
  if (n_messages != self->notified_messages)
    {
      self->notified_messages = n_messages;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BUFFERED_MESSAGES]);
    }
  if (writable != self->notified_writable)
    {
      self->notified_writable = writable;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_WRITABLE]);
    }
  g_object_thaw_notify (G_OBJECT (self));

  /* Posts made since (from another thread, or a waiter's callback) may
   * have reached the mark again: then the next drain is the one. */
  if (drains > 0 && writable)
    g_signal_emit (self, signals[SIGNAL_DRAIN], 0);
}

/* G_MESSAGES_DEBUG=msgport-glib: @self emits ::close, and why. */
static void
debug_close (MsgPortMain *self)
{
  GError *reason = msg_port_main_get_close_reason (self);

  MSG_DEBUG ("port %p: closed: %s (%s %d)", (gpointer) self,
             reason != NULL ? reason->message : "no reason",
             reason != NULL ? g_quark_to_string (reason->domain) : "",
             reason != NULL ? reason->code : 0);
  g_clear_error (&reason);
}

/* The event for @item, a message (taken), from the pool in @cache; the
 * caller gives it back with msg_event_pool_give_back() and frees
 * @envelope, which is set if @item was one. */
static MsgMessageEvent *
msg_port_main_take_event (MsgItem       *item,
                          MsgEmitCache  *cache,
                          MsgEnvelope  **envelope_out)
{
  MsgEnvelope *envelope = NULL;
  MsgPortMain **ports = NULL;
  GUnixFDList *fd_list = NULL;
  guint n_ports = 0;
  GVariant *data;

  if (msg_item_is_envelope (item))
    {
      envelope = msg_item_peek_envelope (item);
      data = g_steal_pointer (&envelope->data);
      fd_list = g_steal_pointer (&envelope->fd_list);
      n_ports = envelope->n_ports;
      if (n_ports > 0)
        {
          ports = g_new (MsgPortMain *, n_ports + 1);
          for (guint i = 0; i < n_ports; i++)
            ports[i] = msg_port_main_new_for_endpoint (g_steal_pointer (&envelope->ports[i]));
          ports[n_ports] = NULL;
        }
    }
  else
    {
      data = (GVariant *) item;
    }

  if (cache->data == NULL)
    {
      cache->data = msg_event_pool_new ();
      cache->destroy = msg_event_pool_free;
    }
  *envelope_out = envelope;
  return msg_event_pool_take (cache->data, data, ports, n_ports, fd_list);
}

/* The MsgEmitFunc of a started port: emits what @item carries on @self,
 * in its context, and frees it. @cache holds the MsgEventPool of the
 * context. */
static void
msg_port_main_emit (MsgPortMain  *self,
                    MsgItem      *item,
                    MsgEmitCache *cache)
{
  MsgEnvelope *envelope = NULL;
  MsgMessageEvent *event;

  if (item == NULL)
    {
      msg_port_main_emit_flow (self);
      return;
    }

  if (msg_item_is_close (item))
    {
      /* The counters were reset when the channel ended. */
      msg_port_main_emit_flow (self);
      if (G_UNLIKELY (msg_debug_enabled ()))
        debug_close (self);
      g_signal_emit (self, signals[SIGNAL_CLOSE], 0);
      msg_item_free (item);
      return;
    }

  event = msg_port_main_take_event (item, cache, &envelope);

  if (self->message_func != NULL)
    {
      self->in_message_func = TRUE;
      self->message_func (self, event, self->message_data);
      self->in_message_func = FALSE;
      /* It replaced itself: its data goes now that it has returned. */
      if (self->running_notify != NULL)
        {
          GDestroyNotify notify = g_steal_pointer (&self->running_notify);

          notify (g_steal_pointer (&self->running_data));
        }
    }
  else
    {
      g_signal_emit (self, signals[SIGNAL_MESSAGE], 0, event);
    }

  msg_event_pool_give_back (cache->data, event);

  if (envelope != NULL)
    msg_envelope_free (envelope);
}

/* Receiving ----------------------------------------------------------------- */

/* Whether the endpoint of @self is bound for receives: to a dispatcher,
 * without being started. */
static gboolean
msg_port_main_is_receiving_locked (MsgPortMain *self)
{
  MsgEndpoint *endpoint = self->endpoint;

  msg_mutex_assert_held (&endpoint->lock);

  return endpoint->port == self && endpoint->ready_list != NULL && !endpoint->started;
}

/* The task data of a receive. */
typedef struct
{
  GSource *cancel_source;  /* (owned) (nullable): in the task's context; its
                            * callback holds a reference on the task until
                            * it is destroyed */
} MsgReceiveData;

static void
msg_receive_data_free (gpointer data)
{
  MsgReceiveData *receive = data;

  if (receive->cancel_source != NULL)
    {
      g_source_destroy (receive->cancel_source);
      g_source_unref (receive->cancel_source);
    }
  g_free (receive);
}

/* Completes @task (its reference taken) with @event or @error (taken), in
 * its context's thread, with no lock held. */
static void
msg_receive_return (GTask           *task,
                    MsgMessageEvent *event,
                    GError          *error)
{
  MsgReceiveData *receive = g_task_get_task_data (task);

  if (receive->cancel_source != NULL)
    g_source_destroy (receive->cancel_source);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, event, g_object_unref);
  g_object_unref (task);
}

/* Called in the receives' context after one was taken out: once none is
 * left, the endpoint is unbound, and its items wait in its queue again.
 * Returns the dispatcher for msg_port_main_receives_unbound(), or %NULL. */
static MsgDispatcher *
msg_port_main_receives_changed_locked (MsgPortMain *self)
{
  msg_mutex_assert_held (&self->endpoint->lock);

  if (self->receives.length > 0 || !msg_port_main_is_receiving_locked (self))
    return NULL;
  return msg_dispatcher_unbind_locked (self->endpoint);
}

/* No lock held: lets go of @dispatcher and of the reference @self held
 * on itself while it was bound for receives. */
static void
msg_port_main_receives_unbound (MsgPortMain   *self,
                                MsgDispatcher *dispatcher)
{
  if (dispatcher == NULL)
    return;
  msg_dispatcher_release (dispatcher);
  g_object_unref (self);
}

/* The MsgEmitFunc of a port with receives pending: hands @item to the
 * oldest one, in the receives' context. The dispatcher popped @item while
 * the port was bound for receives, so there was one then, and only this
 * thread takes receives out: there is one now, unless a receive's
 * callback started the port meanwhile, in this context, after which the
 * rest of the dispatch is emitted as signals. */
static void
msg_port_main_receive_emit (MsgPortMain  *self,
                            MsgItem      *item,
                            MsgEmitCache *cache)
{
  MsgEndpoint *endpoint = self->endpoint;
  MsgDispatcher *unbound = NULL;
  MsgEnvelope *envelope = NULL;
  MsgMessageEvent *event;
  GQueue ended = G_QUEUE_INIT;
  GError *reason = NULL;
  GTask *task;

  /* Flow control's notifications are for started ports only. */
  if (item == NULL)
    {
      if (msg_port_main_is_started (self))
        msg_port_main_emit (self, item, cache);
      return;
    }

  msg_mutex_lock (&endpoint->lock);
  task = g_queue_pop_head (&self->receives);
  if (task == NULL)
    {
      gboolean started = endpoint->port == self && endpoint->started;

      msg_mutex_unlock (&endpoint->lock);
      g_assert (started);
      msg_port_main_emit (self, item, cache);
      return;
    }
  if (msg_item_is_close (item))
    {
      /* The dispatcher unbound the endpoint and kept the reason: every
       * receive pending fails with it, and so do later ones. */
      reason = endpoint->close_reason != NULL ? g_error_copy (endpoint->close_reason)
                                              : new_closed_reason ();
      ended = self->receives;
      g_queue_init (&self->receives);
    }
  msg_mutex_unlock (&endpoint->lock);

  if (reason != NULL)
    {
      GTask *other;

      msg_item_free (item);
      while ((other = g_queue_pop_head (&ended)) != NULL)
        msg_receive_return (other, NULL, g_error_copy (reason));
      msg_receive_return (task, NULL, reason);
      return;
    }

  event = msg_port_main_take_event (item, cache, &envelope);
  g_object_ref (event);
  msg_event_pool_give_back (cache->data, event);
  msg_envelope_free (envelope);

  /* Completed first: a callback that runs at once and receives again
   * keeps the port bound. Nothing pops meanwhile: the dispatcher runs
   * this, and cancellations run in this thread too. */
  msg_receive_return (task, event, NULL);

  msg_mutex_lock (&endpoint->lock);
  unbound = msg_port_main_receives_changed_locked (self);
  msg_mutex_unlock (&endpoint->lock);
  msg_port_main_receives_unbound (self, unbound);
}

/* The callback of a receive's cancellable source, in the receive's
 * context: the receive fails, unless it has had its message already. */
static gboolean
msg_port_main_receive_cancelled (GCancellable *cancellable,
                                 gpointer      user_data)
{
  GTask *task = user_data;
  MsgPortMain *self = g_task_get_source_object (task);
  MsgDispatcher *unbound = NULL;
  gboolean pending;

  msg_mutex_lock (&self->endpoint->lock);
  pending = g_queue_remove (&self->receives, task);
  if (pending)
    unbound = msg_port_main_receives_changed_locked (self);
  msg_mutex_unlock (&self->endpoint->lock);

  if (pending)
    {
      GError *error = NULL;

      g_cancellable_set_error_if_cancelled (cancellable, &error);
      msg_port_main_receives_unbound (self, unbound);
      msg_receive_return (task, NULL, error);  /* the queue's reference */
    }
  return G_SOURCE_REMOVE;
}

typedef struct
{
  MsgPortMain *port;   /* (owned) */
  GError      *error;  /* (owned) */
} MsgReceiveFailure;

static void
msg_receive_failure_free (gpointer data)
{
  MsgReceiveFailure *failure = data;

  g_object_unref (failure->port);
  g_error_free (failure->error);
  g_free (failure);
}

static gboolean
msg_port_main_fail_receives_cb (gpointer data)
{
  MsgReceiveFailure *failure = data;
  MsgPortMain *self = failure->port;
  GQueue failed = G_QUEUE_INIT;
  GTask *task;

  msg_mutex_lock (&self->endpoint->lock);
  if (!msg_port_main_is_receiving_locked (self))
    {
      failed = self->receives;
      g_queue_init (&self->receives);
    }
  msg_mutex_unlock (&self->endpoint->lock);

  while ((task = g_queue_pop_head (&failed)) != NULL)
    msg_receive_return (task, NULL, g_error_copy (failure->error));
  return G_SOURCE_REMOVE;
}

/* @self was started or transferred, from any thread: the receives pending
 * on it fail with @error (taken), in their context, where they are taken
 * out (see msg_port_main_receive_emit()). */
static void
msg_port_main_fail_receives (MsgPortMain *self,
                             GError      *error)
{
  GMainContext *context = NULL;
  MsgReceiveFailure *failure;

  msg_mutex_lock (&self->endpoint->lock);
  if (self->receives.head != NULL)
    context = g_main_context_ref (g_task_get_context (self->receives.head->data));
  msg_mutex_unlock (&self->endpoint->lock);

  if (context == NULL)
    {
      g_error_free (error);
      return;
    }

  failure = g_new (MsgReceiveFailure, 1);
  failure->port = g_object_ref (self);
  failure->error = error;
  g_main_context_invoke_full (context, G_PRIORITY_DEFAULT, msg_port_main_fail_receives_cb,
                              failure, msg_receive_failure_free);
  g_main_context_unref (context);
}

/* Transfer lists -------------------------------------------------------- */

static int
compare_endpoints (gconstpointer a,
                   gconstpointer b)
{
  const MsgEndpoint *ea = *(MsgEndpoint * const *) a;
  const MsgEndpoint *eb = *(MsgEndpoint * const *) b;

  return ea < eb ? -1 : ea > eb;
}

/* Checks @transfer as the DOM's StructuredSerializeWithTransfer does and,
 * if it is valid, neuters every port in it: their endpoints, detached from
 * their handles and dispatchers, are returned in @endpoints (owned, in the
 * order listed). On error nothing is changed. */
static gboolean
msg_port_main_take_transfer (MsgPortMain   *self,
                             MsgPortMain  **transfer,
                             guint          n_transfer,
                             MsgEndpoint  **endpoints,
                             GError       **error)
{
  g_autofree MsgEndpoint **sorted = NULL;
  g_autofree MsgDispatcher **released = NULL;
  g_autofree MsgPortMain **self_refs = NULL;
  GQueue waiters = G_QUEUE_INIT;
  gboolean valid = TRUE;

  for (guint i = 0; i < n_transfer; i++)
    {
      if (transfer[i] == NULL)
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u is NULL", i);
          return FALSE;
        }
      if (!MSG_IS_PORT_MAIN (transfer[i]))
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u is not a MsgPortMain", i);
          return FALSE;
        }
      if (transfer[i] == self)
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u is the posting port itself", i);
          return FALSE;
        }
      for (guint j = 0; j < i; j++)
        {
          if (transfer[j] == transfer[i])
            {
              g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                           "Transfer list items %u and %u are the same port", j, i);
              return FALSE;
            }
        }
    }

  /* Lock every endpoint at once, in address order, so that two threads
   * transferring the same port cannot both succeed. Two handles of one
   * endpoint (a neutered one and its successor) are locked once. */
  sorted = g_new (MsgEndpoint *, n_transfer);
  for (guint i = 0; i < n_transfer; i++)
    sorted[i] = transfer[i]->endpoint;
  qsort (sorted, n_transfer, sizeof (MsgEndpoint *), compare_endpoints);
  for (guint i = 0; i < n_transfer; i++)
    if (i == 0 || sorted[i] != sorted[i - 1])
      msg_mutex_lock (&sorted[i]->lock);

  for (guint i = 0; i < n_transfer && valid; i++)
    {
      MsgEndpoint *endpoint = transfer[i]->endpoint;

      if (endpoint->port != transfer[i])
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u was already transferred", i);
          valid = FALSE;
        }
      else if (endpoint->closed)
        {
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u is closed", i);
          valid = FALSE;
        }
      else if (endpoint->peer != NULL &&
               !msg_transport_check_process (msg_endpoint_get_sink (endpoint->peer), NULL))
        {
          /* Sent on, its socket would let another process write into
           * the parent's stream. */
          g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
                       "Transfer list item %u belongs to the parent process "
                       "(it was made before fork())", i);
          valid = FALSE;
        }
    }

  if (valid)
    {
      released = g_new0 (MsgDispatcher *, n_transfer);
      self_refs = g_new0 (MsgPortMain *, n_transfer);

      for (guint i = 0; i < n_transfer; i++)
        {
          MsgEndpoint *endpoint = transfer[i]->endpoint;

          endpoint->port = NULL;
          endpoint->started = FALSE;
          /* Waiting for the old handle to be writable is over; the
           * counters and the mark go with the endpoint. */
          msg_endpoint_steal_flow_waiters_locked (endpoint, &waiters);
          endpoint->flow_pending = FALSE;
          endpoint->flow_drains = 0;
          /* Started: its queue goes with it, unemitted, and the
           * reference it held on its handle is let go. */
          released[i] = msg_dispatcher_unbind_locked (endpoint);
          if (released[i] != NULL)
            self_refs[i] = transfer[i];
          if (endpoint->close_emitted)
            {
              /* It had ended here: it ends again at its new home. */
              endpoint->close_emitted = FALSE;
              msg_queue_push (&endpoint->queue,
                              msg_item_from_envelope (msg_envelope_new_close (g_steal_pointer (&endpoint->close_reason))));
            }
          endpoints[i] = msg_endpoint_ref (endpoint);
        }
    }

  for (guint i = 0; i < n_transfer; i++)
    if (i == 0 || sorted[i] != sorted[i - 1])
      msg_mutex_unlock (&sorted[i]->lock);

  if (!valid)
    return FALSE;

  if (waiters.length > 0)
    {
      GError *moved = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                           "The port was transferred");

      msg_flow_waiters_finish (&waiters, moved);
      g_error_free (moved);
    }

  for (guint i = 0; i < n_transfer; i++)
    {
      MSG_DEBUG ("port %p: transferred with a message on port %p (endpoint %p)",
                 (gpointer) transfer[i], (gpointer) self, (gpointer) endpoints[i]);
      if (released[i] != NULL)
        msg_dispatcher_release (released[i]);
      g_clear_object (&self_refs[i]);
      if (released[i] != NULL)
        msg_port_main_fail_receives (transfer[i],
                                     g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                                          "The port was transferred"));
    }

  return TRUE;
}

/* Descriptors ------------------------------------------------------------ */

/* Checks that every handle in @value indexes a list of @n_fds
 * descriptors, or is -1, which stands for no descriptor (as in GDBus). */
static gboolean
check_handles (GVariant  *value,
               int        n_fds,
               GError   **error)
{
  gint32 handle;

  if (msg_wire_check_handles (value, (guint) n_fds, &handle))
    return TRUE;
  g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE,
               "The message holds the handle %" G_GINT32_FORMAT ", which does not "
               "index its list of %d descriptors (-1 stands for none)",
               handle, n_fds);
  return FALSE;
}

/* Checks @fd_list (the caller's) against the handles of @message, to be
 * posted with @n_transfer ports to @peer (nullable: the message is
 * dropped), and returns in
 * *@fds the receiver's own duplicates of its descriptors, in order, or
 * %NULL if there are none or nobody receives them. On error nothing is
 * left open. */
static gboolean
msg_port_main_take_fd_list (GUnixFDList  *fd_list,
                            GVariant     *message,
                            guint         n_transfer,
                            MsgEndpoint  *peer,
                            GUnixFDList **fds,
                            GError      **error)
{
  const int *caller_fds;
  int *dups;
  int n_fds;

  *fds = NULL;
  caller_fds = g_unix_fd_list_peek_fds (fd_list, &n_fds);
  if (message != NULL && !check_handles (message, n_fds, error))
    return FALSE;
  if (n_fds == 0 || peer == NULL)
    return TRUE;

  /* To another process: a peer that takes descriptors, as many as a
   * frame carries beside the ports. */
  if (!msg_transport_check_fds (msg_endpoint_get_sink (peer), (guint) n_fds, n_transfer, error))
    return FALSE;

  dups = g_new (int, n_fds);
  for (int i = 0; i < n_fds; i++)
    {
      dups[i] = fcntl (caller_fds[i], F_DUPFD_CLOEXEC, 0);
      if (dups[i] < 0)
        {
          int errsv = errno;

          for (int j = 0; j < i; j++)
            close (dups[j]);
          g_free (dups);
          g_set_error (error, MSG_PORT_ERROR, msg_transport_error_code (errsv),
                       "Cannot duplicate descriptor %d of the list: %s",
                       i, g_strerror (errsv));
          return FALSE;
        }
    }
  /* The list owns the duplicates from here on. */
  *fds = g_unix_fd_list_new_from_array (dups, n_fds);
  g_free (dups);

  return TRUE;
}

static gboolean msg_port_main_post_full (MsgPortMain   *self,
                                         GVariant      *message,
                                         MsgPortMain  **transfer,
                                         guint          n_transfer,
                                         GUnixFDList   *fd_list,
                                         GError       **error);

/**
 * msg_port_main_post_message:
 * @self: a #MsgPortMain
 * @message: (nullable): the message; a floating reference is sunk
 * @transfer: (array length=n_transfer) (nullable) (transfer none): ports to
 *   move to the receiver along with @message
 * @n_transfer: the length of @transfer
 * @error: return location for a #GError, or %NULL
 *
 * Posts @message to the port entangled with @self. It arrives there as a
 * #MsgPortMain::message signal, after every message posted before it on
 * @self. Within a process, the receiver gets @message itself, not a copy.
 * Posting never blocks and never emits a signal. Safe to call from any
 * thread.
 *
 * The ports in @transfer move with the message: after a successful post
 * they are neutered here (posting on them, starting or closing them does
 * nothing) and the receiver gets new #MsgPortMain objects entangled with the
 * same peers, in the same order, with every message that was queued on
 * them or still in flight to them.
 *
 * To a port in another process, @message is serialized (it must be at most
 * 128 MiB serialized, with at most 1024 ports), and fails with
 * %MSG_PORT_ERROR_TOO_LARGE otherwise, sending nothing. #GVariant handles
 * (`h`) are sent as plain integers: to send open descriptors with a
 * message, use msg_port_main_post_with_unix_fd_list().
 *
 * Fails with %MSG_PORT_ERROR_DATA_CLONE, sending nothing and neutering
 * nothing, if @transfer holds @self, the same port twice, %NULL, or a port
 * that was already transferred or is closed. If @transfer holds the port
 * @self is entangled with, the post succeeds but the channel is lost: the
 * message is dropped, @self is closed and the peer is neutered, as the HTML
 * standard says.
 *
 * On a closed or disconnected port the message is dropped and %TRUE is
 * returned; the transfer list is still checked, and the ports in it are
 * neutered and closed, so their peers emit #MsgPortMain::close. On a
 * neutered port this does nothing at all and returns %TRUE.
 *
 * In a child forked without exec(), a socket-backed port made before the
 * fork is the parent's: posting on it fails with %MSG_PORT_ERROR_CLOSED,
 * and listing it in @transfer with %MSG_PORT_ERROR_DATA_CLONE; nothing is
 * ever written to its socket from the child (see msg_port_main_new_for_fd()).
 *
 * Returns: %TRUE if the message was posted, or dropped as described
 * Since: 1.0
 */
gboolean
msg_port_main_post_message (MsgPortMain   *self,
                            GVariant      *message,
                            MsgPortMain  **transfer,
                            guint          n_transfer,
                            GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (transfer != NULL || n_transfer == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return msg_port_main_post_full (self, message, transfer, n_transfer, NULL, error);
}

/* post_message(), and the descriptors in @fd_list (nullable) for the
 * receiver: the arguments are checked. */
static gboolean
msg_port_main_post_full (MsgPortMain   *self,
                         GVariant      *message,
                         MsgPortMain  **transfer,
                         guint          n_transfer,
                         GUnixFDList   *fd_list,
                         GError       **error)
{
  MsgEndpoint *endpoint;
  MsgEndpoint *peer;
  MsgSink *peer_sink = NULL;
  MsgItem *item;
  GUnixFDList *fds = NULL;  /* (owned) (nullable): the receiver's */
  MsgReadyList *wake = NULL;
  gsize size;

  /* Sink once, where the message enters. A floating reference is the
   * caller's to give, so it is taken without g_variant_ref_sink()'s lock. */
  if (message != NULL && g_variant_is_floating (message))
    g_variant_take_ref (message);
  else if (message != NULL)
    g_variant_ref (message);
  /* What flow control counts: msg_item_data_size() of the item. */
  size = message != NULL ? g_variant_get_size (message) : 0;

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  if (G_UNLIKELY (endpoint->port != self))
    {
      /* Neutered: nothing at all happens. */
      msg_mutex_unlock (&endpoint->lock);
      g_clear_pointer (&message, g_variant_unref);
      return TRUE;
    }
  peer = endpoint->peer != NULL ? msg_endpoint_ref (endpoint->peer) : NULL;
  /* Counted where the peer is read, so that the end of the channel, which
   * resets the count under this lock, comes before or after it. */
  if (G_LIKELY (peer != NULL))
    msg_endpoint_count_post_locked (endpoint, size, &wake);
  msg_mutex_unlock (&endpoint->lock);

  if (G_UNLIKELY (wake != NULL))
    wake->funcs->wake (wake);

  /* To another process: what the wire format cannot carry is refused
   * before anything is sent or neutered, and so is a post, in a forked
   * child, on a port whose socket is its parent's. A peer in this process
   * has no sink. */
  if (G_LIKELY (peer != NULL))
    peer_sink = msg_endpoint_get_sink (peer);
  if (G_UNLIKELY (peer_sink != NULL) && msg_transport_is_socket_sink (peer_sink) &&
      (!msg_transport_check_process (peer_sink, error) ||
       !msg_wire_check_message (message, n_transfer, error)))
    {
      /* Not sent after all. */
      msg_endpoint_uncount_post (endpoint, peer, size);
      msg_endpoint_unref (peer);
      g_clear_pointer (&message, g_variant_unref);
      return FALSE;
    }

  /* Descriptors: checked and duplicated before any port is neutered, so
   * that a refused post changes nothing. */
  if (G_UNLIKELY (fd_list != NULL) &&
      !msg_port_main_take_fd_list (fd_list, message, n_transfer, peer, &fds, error))
    {
      if (peer != NULL)
        msg_endpoint_uncount_post (endpoint, peer, size);
      g_clear_pointer (&peer, msg_endpoint_unref);
      g_clear_pointer (&message, g_variant_unref);
      return FALSE;
    }

  if (G_LIKELY (n_transfer == 0 && fds == NULL))
    {
      /* The everyday case: the message is queued as it is. */
      item = msg_item_new_message (g_steal_pointer (&message));
    }
  else
    {
      MsgEnvelope *envelope;
      gboolean doomed = FALSE;

      envelope = msg_envelope_new_message (g_steal_pointer (&message), n_transfer);
      envelope->fd_list = g_steal_pointer (&fds);
      if (n_transfer > 0 &&
          !msg_port_main_take_transfer (self, transfer, n_transfer,
                                        envelope->ports, error))
        {
          if (peer != NULL)
            msg_endpoint_uncount_post (endpoint, peer, size);
          g_clear_pointer (&peer, msg_endpoint_unref);
          msg_envelope_free (envelope);
          return FALSE;
        }

      for (guint i = 0; i < n_transfer && peer != NULL; i++)
        doomed |= envelope->ports[i] == peer;

      if (doomed)
        {
          /* The peer is in its own transfer list: the channel is lost.
           * Close this end first, so that its reason is "closed". */
          msg_port_main_close (self);
          g_clear_pointer (&peer, msg_endpoint_unref);
        }
      item = msg_item_from_envelope (envelope);
    }

  if (G_UNLIKELY (peer == NULL))
    {
      /* Closed, disconnected or doomed: dropping the message discards
       * the transferred endpoints, so their peers close. */
      msg_item_free (item);
      return TRUE;
    }

  msg_endpoint_deliver_sized (peer, item, size);
  msg_endpoint_unref (peer);

  return TRUE;
}

/**
 * msg_port_main_post:
 * @self: a #MsgPortMain
 * @message: (nullable): the message; a floating reference is sunk
 * @error: return location for a #GError, or %NULL
 *
 * Posts @message with no ports to transfer: msg_port_main_post_message()
 * with an empty transfer list. This is the everyday call from bindings:
 * `port.post(GLib.Variant('s', 'hi'))`.
 *
 * Returns: %TRUE if the message was posted, or dropped because the port is
 *   closed, disconnected or neutered
 * Since: 1.0
 */
gboolean
msg_port_main_post (MsgPortMain  *self,
                    GVariant     *message,
                    GError      **error)
{
  /* msg_port_main_post_message() with no transfer list, one call less. */
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return msg_port_main_post_full (self, message, NULL, 0, NULL, error);
}

/**
 * msg_port_main_post_with_unix_fd_list:
 * @self: a #MsgPortMain
 * @message: (nullable): the message; a floating reference is sunk
 * @transfer: (array length=n_transfer) (nullable) (transfer none): ports to
 *   move to the receiver along with @message
 * @n_transfer: the length of @transfer
 * @fd_list: (nullable): descriptors to send with @message, or %NULL
 * @error: return location for a #GError, or %NULL
 *
 * Posts @message with open file descriptors, as GDBus sends them: the
 * `h` (handle) values in @message are indexes into @fd_list, and the
 * receiver finds its own descriptors, in the same order, with
 * msg_message_event_get_unix_fd_list(). A handle of -1 stands for no
 * descriptor. Otherwise this is msg_port_main_post_message(); with
 * @fd_list %NULL it is exactly that, and handles are plain integers.
 *
 * @fd_list stays the caller's, and so do its descriptors: each one is
 * duplicated when the message is posted, so the caller may close or reuse
 * them, or drop @fd_list, as soon as this returns. The receiver gets the
 * duplicates, which are closed if the message is never delivered (its
 * port is closed or dropped first, say) or when the event that carried
 * them goes, unless the receiver takes them. An empty @fd_list sends no
 * descriptors: the receiver gets %NULL, as for a message posted without
 * a list.
 *
 * Fails with %MSG_PORT_ERROR_DATA_CLONE, sending nothing and neutering
 * nothing, if a handle in @message is below -1 or not less than the
 * length of @fd_list, or for the reasons msg_port_main_post_message()
 * gives; with %MSG_PORT_ERROR_TOO_MANY_OPEN_FILES if this process has no
 * descriptors left for the duplicates.
 *
 * Descriptors cross to other processes too, beside the ports in
 * @transfer, and so do those of messages queued on a port that moves to
 * another process. The sender's duplicates are closed once they are
 * written to the socket. To a port whose peer is in another process,
 * the post fails with %MSG_PORT_ERROR_TOO_LARGE if @fd_list and
 * @transfer hold more than 4095 descriptors and ports together, and with
 * %MSG_PORT_ERROR_DATA_CLONE if that process said it cannot receive
 * descriptors (an older msgport-glib); a message posted before it said
 * so waits until it does, and then ends the channel with
 * %MSG_PORT_ERROR_DATA_CLONE.
 *
 * On a closed or disconnected port the handles are still checked, and
 * the message is dropped as msg_port_main_post_message() drops it; on a
 * neutered port this does nothing at all and returns %TRUE.
 *
 * Large data can travel this way without a copy by the transport: a
 * sealed memfd, which the receiver maps (and may check is sealed with
 * `fcntl (fd, F_GET_SEALS)`), or, between processes that trust each
 * other, one of a few memfds that the sender maps once and reuses, posted
 * beside its index, which the receiver posts back when it is done with it.
 * A message of type `ay` is the choice for a peer that is not trusted:
 * from 16 MiB it goes in a sealed memfd of the library's.
 *
 * Returns: %TRUE if the message was posted, or dropped because the port is
 *   closed, disconnected or neutered
 * Since: 1.2
 */
gboolean
msg_port_main_post_with_unix_fd_list (MsgPortMain   *self,
                                      GVariant      *message,
                                      MsgPortMain  **transfer,
                                      guint          n_transfer,
                                      GUnixFDList   *fd_list,
                                      GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (transfer != NULL || n_transfer == 0, FALSE);
  g_return_val_if_fail (fd_list == NULL || G_IS_UNIX_FD_LIST (fd_list), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return msg_port_main_post_full (self, message, transfer, n_transfer, fd_list, error);
}

/**
 * msg_port_main_set_message_func:
 * @self: a #MsgPortMain
 * @func: (nullable) (scope notified) (closure user_data) (destroy notify):
 *   the function to pass each message to, or %NULL to emit
 *   #MsgPortMain::message again
 * @user_data: data for @func
 * @notify: (nullable): called with @user_data when @func is replaced (once
 *   it has returned, if it replaces itself) or the port is disposed
 *
 * Has every message that arrives on @self passed to @func instead of
 * emitted as #MsgPortMain::message: in the same order, in the same
 * context, with the same event (which @func may keep with g_object_ref():
 * an event nobody holds a reference on may be used again for a later
 * message, see #MsgMessageEvent).
 * A port has at most one such function; setting one replaces the last.
 * #MsgPortMain::close is still a signal.
 *
 * This is for C code that handles many small messages: a signal emission
 * costs several hundred instructions and a few atomic operations per
 * message, which is as much as the rest of the delivery within a process.
 * Signals remain the idiomatic way in bindings.
 *
 * Call this before starting the port, or in the thread of the
 * #GMainContext it was started in (from @func itself, for instance). The
 * function does not travel with the port when it is transferred.
 *
 * Since: 1.0
 */
void
msg_port_main_set_message_func (MsgPortMain            *self,
                                MsgPortMainMessageFunc  func,
                                gpointer                user_data,
                                GDestroyNotify          notify)
{
  GDestroyNotify old_notify;
  gpointer old_data;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  old_notify = self->message_notify;
  old_data = self->message_data;
  self->message_func = func;
  self->message_data = user_data;
  self->message_notify = notify;
  if (old_notify == NULL)
    return;
  /* The function that runs now replaces itself: its data must outlive
   * the call. Any later replacement during that call is of a function
   * that never ran. */
  if (self->in_message_func && self->running_notify == NULL)
    {
      self->running_notify = old_notify;
      self->running_data = old_data;
      self->in_message_func = FALSE;
      return;
    }
  old_notify (old_data);
}

/**
 * msg_port_main_start:
 * @self: a #MsgPortMain
 *
 * Starts delivering messages: those queued so far, then each one as it
 * arrives, as #MsgPortMain::message signals in the thread-default
 * #GMainContext of the calling thread (see
 * g_main_context_push_thread_default()). A thread that should receive a
 * port's messages starts it.
 *
 * A port is started once: calling this again, or on a closed or neutered
 * port, does nothing. A started port holds a reference on itself until it
 * is closed, disconnected or transferred, or until the last reference to
 * its context is dropped: the context is not kept alive by the port, and
 * when it is finalized the port ends as if dropped before it was started
 * (its peer emits #MsgPortMain::close; it emits nothing), on the thread
 * that finalized it.
 *
 * Since: 1.0
 */
void
msg_port_main_start (MsgPortMain *self)
{
  MsgEndpoint *endpoint;
  GMainContext *context;
  MsgDispatcher *dispatcher;
  MsgDispatcher *receiving = NULL;
  gboolean bound = FALSE;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  endpoint = self->endpoint;
  /* The dispatcher holds no reference on the context: ours keeps it from
   * being finalized before the port is bound, which would leave the port
   * bound to a dispatcher that ended its ports already. */
  context = g_main_context_ref_thread_default ();
  dispatcher = msg_dispatcher_acquire_full (context, g_atomic_int_get (&self->priority));

  msg_mutex_lock (&endpoint->lock);
  /* A port whose end a receive reported has ended: nothing to start. */
  if (endpoint->port == self && !endpoint->started && !endpoint->closed &&
      !endpoint->close_emitted)
    {
      bound = TRUE;
      /* Receives were pending: they fail, and the reference the port
       * held on itself for them is the started port's. */
      if (msg_port_main_is_receiving_locked (self))
        receiving = msg_dispatcher_unbind_locked (endpoint);
      else
        g_object_ref (self);
      endpoint->started = TRUE;
      msg_dispatcher_bind_locked (dispatcher, endpoint, msg_port_main_emit);
      /* Not writable since before it was started: notify it now. */
      if (g_atomic_int_get (&endpoint->flow_blocked))
        {
          endpoint->flow_pending = TRUE;
          msg_endpoint_mark_ready_locked (endpoint, NULL);
        }
    }
  msg_mutex_unlock (&endpoint->lock);

  if (!bound)
    msg_dispatcher_release (dispatcher);
  else
    MSG_DEBUG ("port %p: started in the context %p", (gpointer) self, (gpointer) context);
  g_main_context_unref (context);

  if (receiving != NULL)
    {
      msg_dispatcher_release (receiving);
      msg_port_main_fail_receives (self,
                                   g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                                                        "The port was started while receives "
                                                        "were pending on it"));
    }
}

/**
 * msg_port_main_close:
 * @self: a #MsgPortMain
 *
 * Disconnects the channel. Every message posted on @self before this call
 * still reaches the other end, which then emits #MsgPortMain::close. If
 * @self is started, it delivers the messages that had already reached it
 * and then emits #MsgPortMain::close too; if it was never started it emits
 * nothing, and what was queued on it is dropped.
 *
 * Later posts on @self are dropped. Closing a closed or neutered port does
 * nothing. Safe to call from any thread.
 *
 * Since: 1.0
 */
void
msg_port_main_close (MsgPortMain *self)
{
  MsgEndpoint *endpoint;
  gboolean started;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port != self || endpoint->closed)
    {
      msg_mutex_unlock (&endpoint->lock);
      return;
    }
  endpoint->closed = TRUE;
  /* Receives pending: they get what had reached the port, then the
   * close, as a started port's handlers would. */
  started = endpoint->started || msg_port_main_is_receiving_locked (self);
  if (!started)
    {
      g_clear_error (&endpoint->close_reason);
      endpoint->close_reason = new_closed_reason ();
    }
  msg_mutex_unlock (&endpoint->lock);

  if (started)
    {
      MSG_DEBUG ("port %p: close() called; it emits close once what reached it is delivered",
                 (gpointer) self);
      msg_endpoint_disentangle (endpoint, new_closed_reason (),
                                msg_endpoint_new_peer_closed_reason ());
    }
  else
    {
      MSG_DEBUG ("port %p: closed: close() called before it was started", (gpointer) self);
      msg_endpoint_discard (endpoint);
    }
}

/**
 * msg_port_main_is_started:
 * @self: a #MsgPortMain
 *
 * Whether msg_port_main_start() was called on @self (and @self was not
 * neutered or closed before).
 *
 * Returns: %TRUE if @self was started
 * Since: 1.0
 */
gboolean
msg_port_main_is_started (MsgPortMain *self)
{
  gboolean started;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);

  msg_mutex_lock (&self->endpoint->lock);
  started = self->endpoint->port == self && self->endpoint->started;
  msg_mutex_unlock (&self->endpoint->lock);

  return started;
}

/**
 * msg_port_main_is_closed:
 * @self: a #MsgPortMain
 *
 * Whether @self is closed or disconnected: msg_port_main_close() was called
 * on it, or its peer went away. A disconnected port that is not started
 * still delivers what was queued on it, then #MsgPortMain::close, once
 * started.
 *
 * This is up to date whether or not the port's #GMainContext runs: the
 * library notices a peer going away on a thread of its own, so code that
 * runs no main loop (a CPU-bound worker, say) can poll it.
 *
 * Returns: %TRUE if no message can reach @self any more
 * Since: 1.0
 */
gboolean
msg_port_main_is_closed (MsgPortMain *self)
{
  gboolean closed;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);

  msg_mutex_lock (&self->endpoint->lock);
  closed = self->endpoint->port == self &&
           (self->endpoint->closed || self->endpoint->ended);
  msg_mutex_unlock (&self->endpoint->lock);

  return closed;
}

/**
 * msg_port_main_is_neutered:
 * @self: a #MsgPortMain
 *
 * Whether @self was transferred away (or lost in a doomed post): such a
 * port does nothing any more.
 *
 * Returns: %TRUE if @self is neutered
 * Since: 1.0
 */
gboolean
msg_port_main_is_neutered (MsgPortMain *self)
{
  gboolean neutered;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);

  msg_mutex_lock (&self->endpoint->lock);
  neutered = self->endpoint->port != self;
  msg_mutex_unlock (&self->endpoint->lock);

  return neutered;
}

/**
 * msg_port_main_get_close_reason:
 * @self: a #MsgPortMain
 *
 * Why @self ended: available once #MsgPortMain::close was emitted on it, or
 * once msg_port_main_close() was called on a port that was never started.
 * The error is in the %MSG_PORT_ERROR domain: %MSG_PORT_ERROR_CLOSED if this
 * end was closed, %MSG_PORT_ERROR_PEER_CLOSED if the other end was closed or
 * dropped, and other codes for the ways a peer process can fail.
 *
 * Before that it is %NULL, even when msg_port_main_is_closed() already
 * returns %TRUE: the reason is delivered in order, with
 * #MsgPortMain::close, after the messages that arrived before the end.
 *
 * Returns: (transfer full) (nullable): a new #GError, or %NULL if @self has
 *   not ended
 * Since: 1.0
 */
GError *
msg_port_main_get_close_reason (MsgPortMain *self)
{
  GError *reason = NULL;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), NULL);

  msg_mutex_lock (&self->endpoint->lock);
  if (self->endpoint->port == self && self->endpoint->close_reason != NULL)
    reason = g_error_copy (self->endpoint->close_reason);
  msg_mutex_unlock (&self->endpoint->lock);

  return reason;
}

/* The endpoint whose sink a flush of @self waits on: its peer, or, once
 * @self is closed, the peer it had (its close is to be written too); a
 * reference, or %NULL for a neutered port or one that never had a peer. */
static MsgEndpoint *
flush_peer_ref (MsgPortMain *self)
{
  MsgEndpoint *endpoint = self->endpoint;
  MsgEndpoint *peer = NULL;

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port == self && endpoint->peer != NULL)
    peer = msg_endpoint_ref (endpoint->peer);
  else if (endpoint->port == self && endpoint->flush_peer != NULL)
    peer = msg_endpoint_ref (endpoint->flush_peer);
  msg_mutex_unlock (&endpoint->lock);
  return peer;
}

/**
 * msg_port_main_flush:
 * @self: a #MsgPortMain
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError, or %NULL
 *
 * Blocks until everything posted on @self so far has been written to its
 * socket, so that the process may exit right after; after
 * msg_port_main_close(), also the close itself, so that the other end
 * sees the port closed rather than its process gone. Messages between ports
 * of one process are delivered to the receiver's queue when they are
 * posted, so for them this returns at once. Do not call it from a thread
 * that the peer needs in order to read (it does not: the library reads on
 * a thread of its own).
 *
 * Returns: %TRUE on success; %FALSE with @error set if @cancellable was
 *   cancelled or the connection failed before everything was written
 * Since: 1.0
 */
gboolean
msg_port_main_flush (MsgPortMain   *self,
                     GCancellable  *cancellable,
                     GError       **error)
{
  MsgEndpoint *peer;
  MsgSink *sink;
  gboolean ok = TRUE;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;

  peer = flush_peer_ref (self);

  if (peer != NULL)
    {
      sink = msg_endpoint_get_sink (peer);
      if (msg_transport_is_socket_sink (sink))
        ok = msg_transport_flush (sink, cancellable, error);
      msg_endpoint_unref (peer);
    }

  return ok;
}

/**
 * msg_port_main_new_for_fd:
 * @fd: a connected `AF_UNIX` `SOCK_STREAM` socket
 * @error: return location for a #GError, or %NULL
 *
 * Makes a port of @fd, one end of a socket whose other end another process
 * holds as a port (made the same way): the two ports are entangled. The
 * port is not started. `socketpair (AF_UNIX, SOCK_STREAM, 0, fds)` before a
 * fork() gives such a pair: each process makes a port of its end after the
 * fork.
 *
 * A port belongs to the process that made it. A child forked without
 * exec() shares the sockets of its parent's ports, but the streams are the
 * parent's: in the child, posting on such a port or flushing it fails with
 * %MSG_PORT_ERROR_CLOSED, transferring it fails with
 * %MSG_PORT_ERROR_DATA_CLONE, closing or dropping it ends it in the child
 * only, and the child never reads or writes its socket. (As in the rest of
 * GLib, little else is safe in a child forked from a process with threads;
 * use exec() and msg_port_main_new_for_launcher() to give a child ports.)
 *
 * On success the port owns @fd: do not use or close it afterwards, and
 * never make two ports of one descriptor (as with g_socket_new_from_fd()):
 * their bytes would interleave on the socket. On failure (@fd is not a
 * valid descriptor, not a socket, not `AF_UNIX`, not `SOCK_STREAM`, or not
 * connected) this returns %NULL with %MSG_PORT_ERROR_INVALID_SOCKET, and
 * the caller keeps @fd.
 *
 * From Python, the override raises `TypeError` if @fd is not an `int` and
 * `ValueError` if it is negative or beyond a C `int`, before the call.
 *
 * Returns: (transfer full) (nullable): a new #MsgPortMain, or %NULL
 * Since: 1.0
 */
MsgPortMain *
msg_port_main_new_for_fd (int      fd,
                          GError **error)
{
  MsgEndpoint *endpoint;

  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  endpoint = msg_transport_new_endpoint (fd, error);
  if (endpoint == NULL)
    return NULL;

  MSG_DEBUG ("endpoint %p: made of the socket %d, to another process", (gpointer) endpoint, fd);
  return msg_port_main_new_for_endpoint (endpoint);
}

/**
 * msg_port_main_new_for_launcher:
 * @launcher: a #GSubprocessLauncher, not used to spawn yet
 * @child_fd: the descriptor number the child gets its end as: 3 or more,
 *   or -1 for 3
 * @error: return location for a #GError, or %NULL
 *
 * Sets up @launcher so that the processes it spawns get a port entangled
 * with the one returned: its socket becomes descriptor @child_fd of the
 * child, and %MSG_PARENT_PORT_ENV names it there, so that the child finds
 * the port with msg_port_main_get_parent_port() (Electron's
 * `utilityProcess.fork()` and `process.parentPort`).
 *
 * Spawn one process with @launcher, then call
 * g_subprocess_launcher_close() on it (or drop it): until then the parent
 * holds the child's end too, and would not notice the child going away.
 * The guide "A child process with a parent port" in this manual has
 * complete programs in C, Python and JavaScript.
 *
 * Fails with %MSG_PORT_ERROR_INVALID_ARGUMENT if @child_fd is below -1 or
 * is 0, 1 or 2 (the child's standard streams), or if @launcher was already
 * given a port: a launcher hands one port to the processes it spawns.
 * Fails with %MSG_PORT_ERROR_TOO_MANY_OPEN_FILES if the process is out of
 * descriptors, and %MSG_PORT_ERROR_IO if no socket pair can be made for
 * another reason.
 *
 * Returns: (transfer full): the parent's port, not started, or %NULL with
 *   @error set
 * Since: 1.0
 */
MsgPortMain *
msg_port_main_new_for_launcher (GSubprocessLauncher  *launcher,
                                int                   child_fd,
                                GError              **error)
{
  static const char launcher_key[] = "msg-port-main-launcher-port";
  MsgPortMain *port;
  g_autofree char *value = NULL;
  int fds[2];

  g_return_val_if_fail (G_IS_SUBPROCESS_LAUNCHER (launcher), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (child_fd == -1)
    child_fd = 3;
  if (child_fd < 3)
    {
      g_set_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                   "The child's descriptor for its port must be 3 or more, "
                   "or -1 for 3, not %d", child_fd);
      return NULL;
    }
  if (g_object_get_data (G_OBJECT (launcher), launcher_key) != NULL)
    {
      g_set_error_literal (error, MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                           "This launcher was already given a port: "
                           "use a new launcher for each port");
      return NULL;
    }

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      int errsv = errno;

      g_set_error (error, MSG_PORT_ERROR, msg_transport_error_code (errsv),
                   "Cannot create a socket pair: %s", g_strerror (errsv));
      return NULL;
    }

  port = msg_port_main_new_for_fd (fds[0], error);
  if (port == NULL)
    {
      close (fds[0]);
      close (fds[1]);
      return NULL;
    }

  g_subprocess_launcher_take_fd (launcher, fds[1], child_fd);
  value = g_strdup_printf ("%d", child_fd);
  g_subprocess_launcher_setenv (launcher, MSG_PARENT_PORT_ENV, value, TRUE);
  g_object_set_data (G_OBJECT (launcher), launcher_key, GINT_TO_POINTER (TRUE));

  return port;
}

static GMutex parent_port_lock;
static MsgPortMain *parent_port;       /* (owned) (nullable) */
static gboolean parent_port_checked;  /* protected by parent_port_lock */

/**
 * msg_port_main_get_parent_port:
 *
 * Gets the port that the parent process set up with
 * msg_port_main_new_for_launcher() when it spawned this process (Electron's
 * `process.parentPort`). The first call takes the descriptor named by
 * %MSG_PARENT_PORT_ENV and removes that variable from the environment, so
 * that this process's own children do not see it. The port is not started.
 *
 * If the variable does not name a connected `AF_UNIX` stream socket (it
 * is not a number, or the descriptor is closed or something else), this
 * process has no parent port: %NULL, and the reason is logged with
 * g_debug() (`G_MESSAGES_DEBUG=Msg` shows it). A process cannot be made
 * to abort through its environment, even under `G_DEBUG=fatal-warnings`.
 *
 * Returns: (transfer none) (nullable): the parent port, or %NULL if this
 *   process has none
 * Since: 1.0
 */
MsgPortMain *
msg_port_main_get_parent_port (void)
{
  MsgPortMain *port;

  msg_mutex_lock (&parent_port_lock);
  if (!parent_port_checked)
    {
      const char *value = g_getenv (MSG_PARENT_PORT_ENV);
      g_autoptr(GError) error = NULL;
      char *end = NULL;
      gint64 fd;

      parent_port_checked = TRUE;
      if (value != NULL)
        {
          fd = g_ascii_strtoll (value, &end, 10);
          if (end == value || *end != '\0' || fd < 0 || fd > G_MAXINT)
            g_debug ("%s=%s is not a descriptor number", MSG_PARENT_PORT_ENV, value);
          else if ((parent_port = msg_port_main_new_for_fd ((int) fd, &error)) == NULL)
            g_debug ("%s: %s", MSG_PARENT_PORT_ENV, error->message);
          g_unsetenv (MSG_PARENT_PORT_ENV);
        }
    }
  port = parent_port;
  msg_mutex_unlock (&parent_port_lock);

  return port;
}

/**
 * msg_port_main_flush_async:
 * @self: a #MsgPortMain
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when everything posted so far was
 *   written, or the flush failed
 * @user_data: data for @callback
 *
 * msg_port_main_flush() that does not block the calling thread: @callback
 * is called in the thread-default #GMainContext of the calling thread
 * once everything posted on @self before this call has been written to
 * its socket (after msg_port_main_close(), the close too). Call
 * msg_port_main_flush_finish() there to get the result.
 *
 * Nothing waits meanwhile, in any thread: the library's I/O thread,
 * which writes the socket, finishes the flush when the last byte it waits
 * for went out, so any number of flushes may be pending at once. For a
 * port whose peer is in this process it completes at once (on the next
 * iteration of the context).
 *
 * Since: 1.2
 */
void
msg_port_main_flush_async (MsgPortMain         *self,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  MsgEndpoint *peer;
  MsgSink *sink;
  GTask *task;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, msg_port_main_flush_async);
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  peer = flush_peer_ref (self);

  sink = peer != NULL ? msg_endpoint_get_sink (peer) : NULL;
  if (msg_transport_is_socket_sink (sink))
    msg_transport_flush_async (sink, task);
  else
    g_task_return_boolean (task, TRUE);
  g_clear_pointer (&peer, msg_endpoint_unref);
  g_object_unref (task);
}

/**
 * msg_port_main_flush_finish:
 * @self: a #MsgPortMain
 * @result: the #GAsyncResult passed to the callback of
 *   msg_port_main_flush_async()
 * @error: return location for a #GError, or %NULL
 *
 * Finishes msg_port_main_flush_async().
 *
 * Returns: %TRUE if everything was written; %FALSE with @error set as
 *   msg_port_main_flush() sets it (%G_IO_ERROR_CANCELLED if it was
 *   cancelled)
 * Since: 1.2
 */
gboolean
msg_port_main_flush_finish (MsgPortMain   *self,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == msg_port_main_flush_async, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * msg_port_main_receive_async:
 * @self: a #MsgPortMain that is not started
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the next message, or when the
 *   receive fails
 * @user_data: data for @callback
 *
 * Receives the next message that arrives on @self, for code that awaits
 * messages rather than handles #MsgPortMain::message. @callback is called
 * in the thread-default #GMainContext of the calling thread (GIO's
 * convention); call msg_port_main_receive_finish() there to get the
 * message, its data and the ports that came with it, as a
 * #MsgMessageEvent.
 *
 * Several receives may be pending, from the same #GMainContext: they are
 * served in the order they were made, each message to exactly one of
 * them. While receives are pending, messages are delivered to them and
 * to nothing else; when none is pending, messages wait in the port's
 * queue as before start(), and nothing is lost. A receive from another
 * context while some are pending fails with %G_IO_ERROR_PENDING.
 *
 * Once the channel has ended and every message that reached @self has
 * been received, receives fail with the close reason (see
 * msg_port_main_get_close_reason(): %MSG_PORT_ERROR_PEER_CLOSED when the
 * other end was closed, %MSG_PORT_ERROR_CLOSED when this one was, and so
 * on): a loop of receives ends there, which is also how to await the end
 * of a channel without a #MsgPortMain::close handler. msg_port_main_close()
 * while receives are pending has them get the messages that had reached
 * the port, then %MSG_PORT_ERROR_CLOSED.
 *
 * Receiving and starting exclude each other. On a started port a receive
 * fails at once with %MSG_PORT_ERROR_INVALID_ARGUMENT; msg_port_main_start()
 * while receives are pending starts the port and has them fail with
 * %MSG_PORT_ERROR_INVALID_ARGUMENT, and the messages that had not reached
 * a receive go to the signal handlers. A port that was transferred fails
 * receives with %MSG_PORT_ERROR_CLOSED, also those pending when it was.
 * Once a receive has reported the end of the channel, msg_port_main_start()
 * does nothing.
 *
 * If @cancellable is cancelled before the receive has a message, it fails
 * with %G_IO_ERROR_CANCELLED and the message goes to the next receive; a
 * message it already has is not taken back.
 *
 * Since: 1.2
 */
void
msg_port_main_receive_async (MsgPortMain         *self,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  MsgEndpoint *endpoint;
  MsgDispatcher *dispatcher;
  MsgDispatcher *old_cached = NULL;
  MsgReceiveData *receive;
  GMainContext *context;
  gboolean cache = FALSE;
  GError *error = NULL;
  GTask *task;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, msg_port_main_receive_async);
  /* A message handed to a receive is its own: a cancellation that comes
   * after it must not drop it. */
  g_task_set_check_cancellable (task, FALSE);
  /* Completed, when not at once, at the port's priority too. */
  g_task_set_priority (task, g_atomic_int_get (&self->priority));
  receive = g_new0 (MsgReceiveData, 1);
  g_task_set_task_data (task, receive, msg_receive_data_free);

  if (g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      msg_receive_return (task, NULL, error);
      return;
    }

  /* The task's context is the caller's thread-default one, and the task
   * holds a reference on it while it is pending. */
  context = g_task_get_context (task);
  dispatcher = msg_dispatcher_acquire_full (context, g_atomic_int_get (&self->priority));

  if (cancellable != NULL)
    {
      receive->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (receive->cancel_source,
                             G_SOURCE_FUNC (msg_port_main_receive_cancelled),
                             g_object_ref (task), g_object_unref);
      g_source_set_static_name (receive->cancel_source, "MsgPortMain receive cancelled");
      g_source_set_priority (receive->cancel_source, g_task_get_priority (task));
      g_source_attach (receive->cancel_source, context);
    }

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  if (self->receive_dispatcher != dispatcher)
    {
      old_cached = g_steal_pointer (&self->receive_dispatcher);
      cache = TRUE;
    }
  msg_mutex_unlock (&endpoint->lock);
  if (cache)
    {
      /* A reference of its own (the one above goes to the binding). */
      MsgDispatcher *cached = msg_dispatcher_acquire_full (context, g_atomic_int_get (&self->priority));

      msg_mutex_lock (&endpoint->lock);
      if (self->receive_dispatcher == NULL)
        self->receive_dispatcher = g_steal_pointer (&cached);
      msg_mutex_unlock (&endpoint->lock);
      if (cached != NULL)
        msg_dispatcher_release (cached);
      if (old_cached != NULL)
        msg_dispatcher_release (old_cached);
    }

  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port != self)
    {
      error = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                   "The port was transferred");
    }
  else if (endpoint->started)
    {
      error = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_INVALID_ARGUMENT,
                                   "The port is started: its messages go to its "
                                   "::message handlers, not to receives");
    }
  else if (self->receives.head != NULL &&
           g_task_get_context (self->receives.head->data) != context)
    {
      error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_PENDING,
                                   "Receives are pending on this port in another "
                                   "main context");
    }
  else if (!msg_port_main_is_receiving_locked (self) && endpoint->queue.length == 0 &&
           (endpoint->ended || endpoint->closed))
    {
      /* Ended, and everything that came before was received. */
      error = endpoint->close_reason != NULL ? g_error_copy (endpoint->close_reason)
                                             : new_closed_reason ();
    }
  else
    {
      if (!msg_port_main_is_receiving_locked (self))
        {
          g_object_ref (self);
          msg_dispatcher_bind_locked (g_steal_pointer (&dispatcher), endpoint,
                                      msg_port_main_receive_emit);
        }
      g_queue_push_tail (&self->receives, g_object_ref (task));
    }
  msg_mutex_unlock (&endpoint->lock);

  if (dispatcher != NULL)
    msg_dispatcher_release (dispatcher);
  if (error != NULL)
    msg_receive_return (task, NULL, error);
  else
    g_object_unref (task);
}

/**
 * msg_port_main_receive_finish:
 * @self: a #MsgPortMain
 * @result: the #GAsyncResult passed to the callback of
 *   msg_port_main_receive_async()
 * @error: return location for a #GError, or %NULL
 *
 * Finishes msg_port_main_receive_async(). The ports in the event are not
 * started; the event owns them (see #MsgMessageEvent).
 *
 * Returns: (transfer full): the message, or %NULL with @error set: the
 *   close reason once the channel has ended and every message was
 *   received, %G_IO_ERROR_CANCELLED, or one of the errors
 *   msg_port_main_receive_async() lists
 * Since: 1.2
 */
MsgMessageEvent *
msg_port_main_receive_finish (MsgPortMain   *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == msg_port_main_receive_async, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
on_sync_received (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

static gboolean
on_sync_timeout (gpointer user_data)
{
  gboolean *timed_out = user_data;

  *timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

static void
on_sync_cancelled (GCancellable *cancellable,
                   gpointer      user_data)
{
  g_cancellable_cancel (user_data);
}

/* The context msg_port_main_receive() runs in, one per thread, kept from
 * one call to the next: with a new one each time, each message cost a
 * context and a dispatcher (13.6 us a message, against 4-5 us). Only
 * receive() uses it, so nothing else ever runs in it. */
static GPrivate receive_context = G_PRIVATE_INIT ((GDestroyNotify) g_main_context_unref);

/**
 * msg_port_main_receive:
 * @self: a #MsgPortMain that is not started
 * @timeout_ms: how long to wait, in milliseconds: -1 waits until a message
 *   arrives or the channel ends, 0 takes a message only if one is there
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError, or %NULL
 *
 * Receives the next message on @self, blocking the calling thread for at
 * most @timeout_ms: for worker threads that run no main loop (Node's
 * `receiveMessageOnPort()`, with a wait). It is
 * msg_port_main_receive_async() run in a #GMainContext of its own (one
 * per thread, which only this function uses), pushed as the
 * thread-default context meanwhile, with the same rules; so it fails with
 * %G_IO_ERROR_PENDING while receives made in another context are pending
 * on @self.
 *
 * With @timeout_ms 0 it takes what had arrived on @self, if anything; a
 * message from another process still on its way is not waited for.
 *
 * Returns: (transfer full): the message, or %NULL with @error set:
 *   %G_IO_ERROR_TIMED_OUT if none arrived in time, %G_IO_ERROR_CANCELLED,
 *   the close reason once the channel has ended and every message was
 *   received, or another error of msg_port_main_receive_async()
 * Since: 1.2
 */
MsgMessageEvent *
msg_port_main_receive (MsgPortMain   *self,
                       gint           timeout_ms,
                       GCancellable  *cancellable,
                       GError       **error)
{
  GMainContext *context;
  GCancellable *inner;
  GAsyncResult *result = NULL;
  GSource *timeout = NULL;
  gboolean timed_out = FALSE;
  MsgMessageEvent *event;
  GError *local_error = NULL;
  gulong handler = 0;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), NULL);
  g_return_val_if_fail (timeout_ms >= -1, NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;

  context = g_private_get (&receive_context);
  if (context == NULL)
    {
      context = g_main_context_new ();
      g_private_set (&receive_context, context);
    }
  g_main_context_push_thread_default (context);
  inner = g_cancellable_new ();
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (on_sync_cancelled), inner, NULL);

  msg_port_main_receive_async (self, inner, on_sync_received, &result);

  if (timeout_ms == 0)
    {
      /* Whatever is ready is dispatched, and the task's completion
       * after it, if it is not completed at once. */
      while (result == NULL && g_main_context_iteration (context, FALSE))
        ;
      timed_out = result == NULL;
    }
  else
    {
      if (timeout_ms > 0)
        {
          timeout = g_timeout_source_new ((guint) timeout_ms);
          g_source_set_callback (timeout, on_sync_timeout, &timed_out, NULL);
          g_source_set_static_name (timeout, "MsgPortMain receive timeout");
          g_source_attach (timeout, context);
        }
      while (result == NULL && !timed_out)
        g_main_context_iteration (context, TRUE);
    }

  if (result == NULL)
    {
      /* A message that reaches the receive before the cancellation does
       * is returned, not lost. */
      g_cancellable_cancel (inner);
      while (result == NULL)
        g_main_context_iteration (context, TRUE);
    }

  event = msg_port_main_receive_finish (self, result, &local_error);
  if (event == NULL && timed_out &&
      g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_CANCELLED) &&
      !g_cancellable_is_cancelled (cancellable))
    {
      g_clear_error (&local_error);
      local_error = g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                 "No message arrived within %d ms", timeout_ms);
    }
  if (local_error != NULL)
    g_propagate_error (error, local_error);

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  if (timeout != NULL)
    {
      g_source_destroy (timeout);
      g_source_unref (timeout);
    }
  g_object_unref (result);
  g_object_unref (inner);
  g_main_context_pop_thread_default (context);

  return event;
}

/**
 * msg_port_main_get_priority:
 * @self: a #MsgPortMain
 *
 * Gets #MsgPortMain:priority.
 *
 * Returns: the priority at which the port's messages are dispatched
 * Since: 1.2
 */
gint
msg_port_main_get_priority (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), G_PRIORITY_DEFAULT);

  return g_atomic_int_get (&self->priority);
}

/**
 * msg_port_main_set_priority:
 * @self: a #MsgPortMain
 * @priority: a #GSource priority, such as %G_PRIORITY_DEFAULT
 *
 * Sets #MsgPortMain:priority: the priority at which the port's messages
 * are dispatched in its #GMainContext. Set it before msg_port_main_start()
 * (or before a receive), or in the thread whose thread-default context
 * the port was started in (from a handler, say), where a started port (or
 * one with receives pending) takes the new priority at once. Elsewhere a
 * started port keeps the priority it was started with: its context may
 * be finalizing in another thread, and it is not touched. Safe to call
 * from any thread.
 *
 * Since: 1.2
 */
void
msg_port_main_set_priority (MsgPortMain *self,
                            gint         priority)
{
  MsgEndpoint *endpoint;
  GMainContext *context;
  MsgDispatcher *dispatcher;
  MsgDispatcher *old = NULL;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  if (g_atomic_int_get (&self->priority) == priority)
    return;
  g_atomic_int_set (&self->priority, priority);

  /* Re-bound only from its own context's thread, whose reference (the
   * thread-default stack's, or the global default's) keeps the context
   * alive while the new dispatcher is attached to it. */
  endpoint = self->endpoint;
  context = g_main_context_ref_thread_default ();
  dispatcher = msg_dispatcher_acquire_full (context, priority);
  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port == self && endpoint->ready_list != NULL)
    {
      MsgDispatcher *bound = msg_dispatcher_get_bound_locked (endpoint);

      if (bound != dispatcher && msg_dispatcher_get_context (bound) == context)
        {
          MsgEmitFunc emit = endpoint->emit;

          /* A dispatch of the old one in progress (this is one of its
           * handlers, say) stops at its next item, which the new one
           * delivers: the order stays. */
          old = msg_dispatcher_unbind_locked (endpoint);
          msg_dispatcher_bind_locked (g_steal_pointer (&dispatcher), endpoint, emit);
        }
    }
  msg_mutex_unlock (&endpoint->lock);

  if (dispatcher != NULL)
    msg_dispatcher_release (dispatcher);
  if (old != NULL)
    msg_dispatcher_release (old);
  g_main_context_unref (context);

  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PRIORITY]);
}

/* Flow control ------------------------------------------------------------ */

/**
 * msg_port_main_get_high_water_mark:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:high-water-mark of @self.
 *
 * Returns: the mark, in bytes; 0 if flow control is off
 * Since: 1.2
 */
guint64
msg_port_main_get_high_water_mark (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  return msg_atomic_u64_get (&self->endpoint->high_water_mark);
}

/**
 * msg_port_main_set_high_water_mark:
 * @self: a #MsgPortMain
 * @mark: the mark, in bytes of message data; 0 turns flow control off
 *
 * Sets the #MsgPortMain:high-water-mark of @self. If what is buffered is
 * already at or above @mark, @self stops being writable at once; with 0,
 * or a mark high enough, it becomes writable again (and emits
 * #MsgPortMain::drain, as when the other end takes messages). Safe to call
 * from any thread; does nothing on a neutered port.
 *
 * Since: 1.2
 */
void
msg_port_main_set_high_water_mark (MsgPortMain *self,
                                   guint64      mark)
{
  MsgEndpoint *endpoint;
  gboolean owner;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  owner = endpoint->port == self;
  msg_mutex_unlock (&endpoint->lock);
  if (!owner || msg_atomic_u64_get (&endpoint->high_water_mark) == mark)
    return;

  msg_endpoint_set_high_water_mark (endpoint, mark);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_HIGH_WATER_MARK]);
}

/* Reads @self's endpoint, or returns %FALSE if @self is neutered. */
static gboolean
msg_port_main_owns_endpoint (MsgPortMain *self)
{
  gboolean owner;

  msg_mutex_lock (&self->endpoint->lock);
  owner = self->endpoint->port == self;
  msg_mutex_unlock (&self->endpoint->lock);

  return owner;
}

/**
 * msg_port_main_get_buffered_amount:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:buffered-amount of @self: the bytes of message
 * data posted on it that the other end has not taken yet.
 *
 * Returns: the bytes buffered; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_buffered_amount (MsgPortMain *self)
{
  guint64 n_messages = 0, n_bytes = 0;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  if (msg_port_main_owns_endpoint (self))
    msg_endpoint_get_buffered (self->endpoint, &n_messages, &n_bytes);
  return n_bytes;
}

/**
 * msg_port_main_get_buffered_messages:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:buffered-messages of @self: the messages posted on
 * it that the other end has not taken yet.
 *
 * Returns: the messages buffered; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_buffered_messages (MsgPortMain *self)
{
  guint64 n_messages = 0, n_bytes = 0;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  if (msg_port_main_owns_endpoint (self))
    msg_endpoint_get_buffered (self->endpoint, &n_messages, &n_bytes);
  return n_messages;
}

/**
 * msg_port_main_is_writable:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:writable property of @self: %FALSE while what is
 * buffered on it is at or above its #MsgPortMain:high-water-mark and has
 * not fallen back below half of it.
 *
 * Returns: whether @self is writable
 * Since: 1.2
 */
gboolean
msg_port_main_is_writable (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), TRUE);

  return !msg_port_main_owns_endpoint (self) ||
         !g_atomic_int_get (&self->endpoint->flow_blocked);
}

/**
 * msg_port_main_get_messages_sent:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:messages-sent counter of @self.
 *
 * Returns: the messages sent; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_messages_sent (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  return msg_port_main_owns_endpoint (self) ?
         msg_atomic_u64_get (&self->endpoint->sent_messages) : 0;
}

/**
 * msg_port_main_get_bytes_sent:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:bytes-sent counter of @self.
 *
 * Returns: the bytes of message data sent; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_bytes_sent (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  return msg_port_main_owns_endpoint (self) ?
         msg_atomic_u64_get (&self->endpoint->sent_bytes) : 0;
}

/**
 * msg_port_main_get_messages_received:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:messages-received counter of @self.
 *
 * Returns: the messages received; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_messages_received (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  return msg_port_main_owns_endpoint (self) ?
         msg_atomic_u64_get (&self->endpoint->received_messages) : 0;
}

/**
 * msg_port_main_get_bytes_received:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:bytes-received counter of @self.
 *
 * Returns: the bytes of message data received; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_bytes_received (MsgPortMain *self)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  return msg_port_main_owns_endpoint (self) ?
         msg_atomic_u64_get (&self->endpoint->received_bytes) : 0;
}

/**
 * msg_port_main_get_queued_messages:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:queued-messages counter of @self.
 *
 * Returns: the messages waiting on @self now; 0 on a neutered port
 * Since: 1.2
 */
guint64
msg_port_main_get_queued_messages (MsgPortMain *self)
{
  guint64 queued = 0;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  msg_mutex_lock (&self->endpoint->lock);
  if (self->endpoint->port == self)
    queued = self->endpoint->queue.length;
  msg_mutex_unlock (&self->endpoint->lock);

  return queued;
}

/**
 * msg_port_main_get_max_queued_messages:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:max-queued-messages counter of @self.
 *
 * Returns: the most messages that ever waited on @self; 0 on a neutered
 *   port
 * Since: 1.2
 */
guint64
msg_port_main_get_max_queued_messages (MsgPortMain *self)
{
  guint64 max_queued = 0;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  msg_mutex_lock (&self->endpoint->lock);
  if (self->endpoint->port == self)
    max_queued = self->endpoint->max_queued;
  msg_mutex_unlock (&self->endpoint->lock);

  return max_queued;
}

/* A wait_writable_async() that waits: queued on the endpoint until it is
 * writable or ends (whoever takes it out calls done()), or until its
 * cancellable is cancelled (then the cancel source takes it out). */
typedef struct
{
  MsgFlowWaiter  base;
  GTask         *task;           /* (owned) */
  GSource       *cancel_source;  /* (owned) (nullable) */
  GError        *error;          /* (owned) (nullable): set by done() */
} MsgPortWaiter;

static void
msg_port_waiter_free (MsgPortWaiter *waiter)
{
  if (waiter->cancel_source != NULL)
    {
      g_source_destroy (waiter->cancel_source);
      g_source_unref (waiter->cancel_source);
    }
  g_clear_error (&waiter->error);
  g_object_unref (waiter->task);
  g_free (waiter);
}

/* Returns the task of a waiter that done() took, in the task's context,
 * and frees the waiter there: its cancel source is that context's. */
static gboolean
msg_port_waiter_complete (gpointer data)
{
  MsgPortWaiter *waiter = data;
  GTask *task;
  GError *error;

  MSG_TSAN_ACQUIRE (waiter);
  task = g_object_ref (waiter->task);
  error = g_steal_pointer (&waiter->error);
  msg_port_waiter_free (waiter);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

/* MsgFlowWaiter.done: any thread, no lock held. The waiter is completed
 * in its task's context: at once if this thread runs it, else through an
 * idle source handed over with the library's annotations (GLib hands it
 * over under the context's lock, which ThreadSanitizer cannot see). */
static void
msg_port_waiter_done (MsgFlowWaiter *base,
                      const GError  *error)
{
  MsgPortWaiter *waiter = (MsgPortWaiter *) base;
  GMainContext *context = g_task_get_context (waiter->task);
  GSource *source;

  waiter->error = error != NULL ? g_error_copy (error) : NULL;
  /* Always from the context, never here: this may be inside
   * post_message() or g_object_set(), where a callback that posts would
   * overtake the message being posted. */
  source = g_idle_source_new ();
  g_source_set_priority (source, g_task_get_priority (waiter->task));
  g_source_set_static_name (source, "MsgPortMain wait_writable");
  g_source_set_callback (source, msg_port_waiter_complete, waiter, NULL);
  MSG_TSAN_RELEASE (waiter);
  msg_tsan_glib_begin ();
  g_source_attach (source, context);
  msg_tsan_glib_end ();
  msg_source_unref (source);
}

/* The cancel source of a waiter, in the task's context: the waiter is
 * still queued unless done() took it, which destroyed this source. */
static gboolean
msg_port_waiter_cancelled (GCancellable *cancellable,
                           gpointer      user_data)
{
  GTask *task = user_data;
  MsgPortMain *self = g_task_get_source_object (task);
  MsgEndpoint *endpoint = self->endpoint;
  MsgPortWaiter *found = NULL;

  msg_mutex_lock (&endpoint->lock);
  for (GList *l = endpoint->flow_waiters.head; l != NULL; l = l->next)
    {
      MsgPortWaiter *waiter = l->data;

      if (waiter->task == task)
        {
          g_queue_unlink (&endpoint->flow_waiters, l);
          found = waiter;
          break;
        }
    }
  msg_mutex_unlock (&endpoint->lock);

  if (found != NULL)
    {
      GError *error = NULL;

      g_object_ref (task);
      msg_port_waiter_free (found);
      g_cancellable_set_error_if_cancelled (cancellable, &error);
      g_task_return_error (task, error);
      g_object_unref (task);
    }
  return G_SOURCE_REMOVE;
}

/**
 * msg_port_main_wait_writable_async:
 * @self: a #MsgPortMain
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when @self is writable, or never will be
 * @user_data: data for @callback
 *
 * Waits for @self to be #MsgPortMain:writable: completes at once (in the
 * next iteration of the thread-default #GMainContext of the caller, where
 * @callback is called, as always with #GTask) if it is, else when the
 * other end has taken enough of what was posted for the backlog to fall
 * below the low-water mark, half the #MsgPortMain:high-water-mark.
 *
 * This is how a producer paces itself: post while writable, then wait.
 * The port need not be started. Call msg_port_main_wait_writable_finish()
 * in @callback to get the result.
 *
 * Since: 1.2
 */
void
msg_port_main_wait_writable_async (MsgPortMain         *self,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  MsgEndpoint *endpoint;
  MsgPortWaiter *waiter = NULL;
  GSource *cancel_source = NULL;
  GTask *task;
  GError *error = NULL;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, msg_port_main_wait_writable_async);
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  /* Attached before the waiter is queued, so that nothing touches the
   * waiter once it is: whoever takes it out of the queue, under the lock,
   * frees it (the cancel source finds it no more). */
  if (cancellable != NULL)
    {
      cancel_source = g_cancellable_source_new (cancellable);
      g_task_attach_source (task, cancel_source, G_SOURCE_FUNC (msg_port_waiter_cancelled));
    }

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port != self)
    error = g_error_new_literal (MSG_PORT_ERROR, MSG_PORT_ERROR_CLOSED,
                                 "The port was transferred");
  else if (endpoint->close_reason != NULL)
    error = g_error_copy (endpoint->close_reason);
  else if (endpoint->closed)
    error = new_closed_reason ();
  else if (endpoint->ended)
    error = msg_endpoint_new_peer_closed_reason ();
  else if (g_atomic_int_get (&endpoint->flow_blocked) &&
           !g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      waiter = g_new0 (MsgPortWaiter, 1);
      waiter->base.done = msg_port_waiter_done;
      waiter->base.link.data = waiter;
      waiter->task = g_object_ref (task);
      waiter->cancel_source = g_steal_pointer (&cancel_source);
      g_queue_push_tail_link (&endpoint->flow_waiters, &waiter->base.link);
    }
  msg_mutex_unlock (&endpoint->lock);

  if (cancel_source != NULL)
    {
      g_source_destroy (cancel_source);
      g_source_unref (cancel_source);
    }
  if (error != NULL)
    g_task_return_error (task, error);
  else if (waiter == NULL)
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

/**
 * msg_port_main_wait_writable_finish:
 * @self: a #MsgPortMain
 * @result: the #GAsyncResult passed to the callback
 * @error: return location for a #GError, or %NULL
 *
 * Finishes msg_port_main_wait_writable_async().
 *
 * Returns: %TRUE if @self is writable; %FALSE with @error set if it ended
 *   first (its close reason, in the %MSG_PORT_ERROR domain; an error with
 *   %MSG_PORT_ERROR_CLOSED if it was transferred meanwhile) or the wait
 *   was cancelled (%G_IO_ERROR_CANCELLED)
 * Since: 1.2
 */
gboolean
msg_port_main_wait_writable_finish (MsgPortMain   *self,
                                    GAsyncResult  *result,
                                    GError       **error)
{
  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Keep-alive -------------------------------------------------------------- */

/**
 * msg_port_main_get_keep_alive_interval:
 * @self: a #MsgPortMain
 *
 * Gets the #MsgPortMain:keep-alive-interval of @self.
 *
 * Returns: the interval in milliseconds; 0 if keep-alive is off
 * Since: 1.2
 */
guint
msg_port_main_get_keep_alive_interval (MsgPortMain *self)
{
  MsgEndpoint *endpoint;
  guint interval_ms;

  g_return_val_if_fail (MSG_IS_PORT_MAIN (self), 0);

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  interval_ms = endpoint->port == self ? endpoint->keep_alive_ms : 0;
  msg_mutex_unlock (&endpoint->lock);
  return interval_ms;
}

/**
 * msg_port_main_set_keep_alive_interval:
 * @self: a #MsgPortMain
 * @interval_ms: the interval in milliseconds; 0 turns keep-alive off
 *
 * Sets the #MsgPortMain:keep-alive-interval of @self. Safe to call from
 * any thread; does nothing on a neutered port.
 *
 * Since: 1.2
 */
void
msg_port_main_set_keep_alive_interval (MsgPortMain *self,
                                       guint        interval_ms)
{
  MsgEndpoint *endpoint;
  MsgEndpoint *peer = NULL;
  MsgSink *sink;
  gboolean changed = FALSE;

  g_return_if_fail (MSG_IS_PORT_MAIN (self));

  endpoint = self->endpoint;
  msg_mutex_lock (&endpoint->lock);
  if (endpoint->port == self && endpoint->keep_alive_ms != interval_ms)
    {
      endpoint->keep_alive_ms = interval_ms;
      changed = TRUE;
      if (endpoint->peer != NULL)
        peer = msg_endpoint_ref (endpoint->peer);
    }
  msg_mutex_unlock (&endpoint->lock);
  if (!changed)
    return;

  sink = peer != NULL ? msg_endpoint_get_sink (peer) : NULL;
  if (msg_transport_is_socket_sink (sink))
    msg_transport_set_keep_alive (sink, interval_ms);
  g_clear_pointer (&peer, msg_endpoint_unref);
  MSG_DEBUG ("port %p: keep-alive interval %u ms", (gpointer) self, interval_ms);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_KEEP_ALIVE_INTERVAL]);
}
