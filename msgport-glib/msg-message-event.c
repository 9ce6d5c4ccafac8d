/* msg-message-event.c: what a MsgPortMain::message signal carries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "msg-lock-private.h"
#include "msg-message-event-private.h"
#include "msg-port-main.h"

/**
 * SECTION:msg-message-event
 * @Title: MsgMessageEvent
 * @Short_description: a message and the ports that came with it
 * @See_also: #MsgPortMain
 *
 * A #MsgMessageEvent is what #MsgPortMain::message carries: the message
 * (#MsgMessageEvent:data, a #GVariant or %NULL) and the ports that were
 * transferred with it, in the order the sender listed them.
 *
 * The ports are new #MsgPortMain objects owned by the event, not started.
 * Take a reference on the ones you keep, and start each in the thread
 * that should receive its messages.
 *
 * The event itself is a handler's for the call. To keep it, take a
 * reference with g_object_ref() (bindings do so when they keep it): an
 * event that nobody holds a reference on once the handler returns may be
 * used again for a later message of the same #GMainContext, so a weak
 * reference, a #GWeakRef or data set on the event without a reference of
 * one's own does not see it end.
 *
 * From C, msg_message_event_get_ports() gives them as an array. Bindings
 * also have #MsgMessageEvent:ports, a #GListModel, so that `event.ports`
 * works as it does in the DOM: in JavaScript it is iterable
 * (`const [port] = event.ports;`), and the Python override of this
 * class makes `event.ports` a list and `event.data` the message.
 *
 * A message posted with msg_port_main_post_with_unix_fd_list() also
 * carries open file descriptors, which the event owns:
 * msg_message_event_get_unix_fd_list().
 */

struct _MsgMessageEvent
{
  GObject       parent_instance;

  GVariant     *data;     /* (owned) (nullable) */
  MsgPortMain **ports;    /* (owned) (array length=n_ports zero-terminated=1) (nullable) */
  guint         n_ports;
  GListModel   *port_list; /* (owned) (nullable) (atomic): made on first use */
  GUnixFDList  *fd_list;  /* (owned) (nullable): never empty */
  gint          shared;   /* (atomic): someone besides its pool holds a
                           * reference, as the pool's toggle reference says */
};

enum {
  PROP_0,
  PROP_DATA,
  PROP_N_PORTS,
  PROP_PORTS,
  PROP_UNIX_FD_LIST,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (MsgMessageEvent, msg_message_event, G_TYPE_OBJECT)

static void
msg_message_event_clear (MsgMessageEvent *self)
{
  g_clear_pointer (&self->data, msg_variant_unref);
  for (guint i = 0; i < self->n_ports; i++)
    g_object_unref (self->ports[i]);
  self->n_ports = 0;
  g_clear_pointer (&self->ports, g_free);
  g_clear_object (&self->port_list);
  /* Descriptors nobody took are closed, also when the event is reused. */
  g_clear_object (&self->fd_list);
}

static void
msg_message_event_finalize (GObject *object)
{
  MsgMessageEvent *self = MSG_MESSAGE_EVENT (object);

  msg_message_event_clear (self);

  G_OBJECT_CLASS (msg_message_event_parent_class)->finalize (object);
}

static void
msg_message_event_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  MsgMessageEvent *self = MSG_MESSAGE_EVENT (object);

  switch (prop_id)
    {
    case PROP_DATA:
      g_value_set_variant (value, self->data);
      break;

    case PROP_N_PORTS:
      g_value_set_uint (value, self->n_ports);
      break;

    case PROP_PORTS:
      g_value_set_object (value, msg_message_event_get_port_list (self));
      break;

    case PROP_UNIX_FD_LIST:
      g_value_set_object (value, self->fd_list);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
msg_message_event_class_init (MsgMessageEventClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = msg_message_event_finalize;
  object_class->get_property = msg_message_event_get_property;

  /**
   * MsgMessageEvent:data:
   *
   * The message, as posted: a #GVariant, or %NULL.
   *
   * Since: 1.0
   */
  properties[PROP_DATA] =
    g_param_spec_variant ("data", NULL, NULL,
                          G_VARIANT_TYPE_ANY, NULL,
                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgMessageEvent:n-ports:
   *
   * How many ports were transferred with the message.
   *
   * Since: 1.0
   */
  properties[PROP_N_PORTS] =
    g_param_spec_uint ("n-ports", NULL, NULL,
                       0, G_MAXUINT, 0,
                       G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgMessageEvent:ports: (getter get_port_list)
   *
   * The ports transferred with the message, as a #GListModel of
   * #MsgPortMain, in the order the sender listed them; empty if there are
   * none. It is what `event.ports` gives in JavaScript.
   *
   * Since: 1.0
   */
  properties[PROP_PORTS] =
    g_param_spec_object ("ports", NULL, NULL,
                         G_TYPE_LIST_MODEL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgMessageEvent:unix-fd-list: (getter get_unix_fd_list)
   *
   * The descriptors that came with the message, or %NULL: see
   * msg_message_event_get_unix_fd_list().
   *
   * Since: 1.2
   */
  properties[PROP_UNIX_FD_LIST] =
    g_param_spec_object ("unix-fd-list", NULL, NULL,
                         G_TYPE_UNIX_FD_LIST,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
msg_message_event_init (MsgMessageEvent *self)
{
}

/* Event pools ------------------------------------------------------------ */

/* Constructing and finalizing a GObject per message cost about a quarter of
 * a same-thread message. A pool keeps the event of the last message for
 * the next one when nobody else kept it. It learns that from GObject's
 * public API, never from the object's fields: it holds its event through
 * a toggle reference, whose notifications say whether any other reference
 * exists (a handler's, a binding's, another thread's). Reuse is then as
 * safe as finalization would be: nobody holds the event, and the rule in
 * the documentation above tells that weak references and data do not keep
 * it. A binding's toggle reference comes with a strong reference that we
 * see first, and we give ours up at once then, so that GObject notifies
 * the binding's again (GObject notifies nobody while there are two).
 *
 * (The pool used to read the object's reference count and its qdata
 * pointer instead, which are GObject's own and changed after GLib 2.74;
 * its rule also spared events with weak references, which it cannot see
 * now: the documentation says what to do instead.) */

struct _MsgEventPool
{
  MsgMessageEvent *spare;  /* (owned) (nullable): through its toggle reference */
};

/* Any thread: whoever takes the second reference, or drops it. With GLib
 * before 2.80, g_object_unref() reads the object after the decrement that
 * makes ours the last reference until it has called this, which is why
 * the pool only reuses an event once this said so. */
static void
on_toggle (gpointer  data,
           GObject  *object,
           gboolean  is_last_ref)
{
  g_atomic_int_set (&((MsgMessageEvent *) object)->shared, !is_last_ref);
}

MsgEventPool *
msg_event_pool_new (void)
{
  return g_new0 (MsgEventPool, 1);
}

void
msg_event_pool_free (gpointer data)
{
  MsgEventPool *pool = data;

  if (pool->spare != NULL)
    g_object_remove_toggle_ref (G_OBJECT (pool->spare), on_toggle, NULL);
  g_free (pool);
}

/* An event for a message (taking @data, @ports, a NULL-terminated array
 * of @n_ports ports, or NULL if there are none, and @fd_list, NULL or not
 * empty), on which the caller holds
 * the pool's reference for the emission: it gives it back with
 * msg_event_pool_give_back(). */
MsgMessageEvent *
msg_event_pool_take (MsgEventPool  *pool,
                     GVariant      *data,
                     MsgPortMain  **ports,
                     guint          n_ports,
                     GUnixFDList   *fd_list)
{
  MsgMessageEvent *self = g_steal_pointer (&pool->spare);

  if (self == NULL)
    {
      self = g_object_new (MSG_TYPE_MESSAGE_EVENT, NULL);
      g_object_add_toggle_ref (G_OBJECT (self), on_toggle, NULL);
      /* Ours is the only reference now: on_toggle() says so. */
      g_object_unref (self);
    }

  g_assert (self->data == NULL && self->ports == NULL && self->port_list == NULL &&
            self->fd_list == NULL);
  self->data = data;
  self->ports = ports;
  self->n_ports = n_ports;
  self->fd_list = fd_list;
  return self;
}

/* After emission: keeps @self for the next message if nobody else holds a
 * reference on it, or lets it go to those who do. */
void
msg_event_pool_give_back (MsgEventPool    *pool,
                          MsgMessageEvent *self)
{
  if (!g_atomic_int_get (&self->shared) && pool->spare == NULL)
    {
      msg_message_event_clear (self);
      pool->spare = self;
      return;
    }
  g_object_remove_toggle_ref (G_OBJECT (self), on_toggle, NULL);
}

/**
 * msg_message_event_get_data:
 * @self: a #MsgMessageEvent
 *
 * Gets the message. Within a process it is the #GVariant that was posted;
 * from another process, an equal #GVariant of the same type, in normal
 * form.
 *
 * Returns: (transfer none) (nullable): the message, or %NULL if %NULL was
 *   posted
 * Since: 1.0
 */
GVariant *
msg_message_event_get_data (MsgMessageEvent *self)
{
  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), NULL);

  return self->data;
}

/**
 * msg_message_event_get_ports:
 * @self: a #MsgMessageEvent
 * @n_ports: (out) (optional): return location for the number of ports
 *
 * Gets the ports transferred with the message, in the order the sender
 * listed them. They are not started. The array is %NULL-terminated.
 *
 * Returns: (array length=n_ports) (transfer none) (nullable): the ports,
 *   owned by @self; %NULL if there are none
 * Since: 1.0
 */
MsgPortMain **
msg_message_event_get_ports (MsgMessageEvent *self,
                             guint           *n_ports)
{
  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), NULL);

  if (n_ports != NULL)
    *n_ports = self->n_ports;

  return self->ports;
}

/**
 * msg_message_event_get_n_ports:
 * @self: a #MsgMessageEvent
 *
 * Gets the number of ports transferred with the message.
 *
 * Returns: the number of ports
 * Since: 1.0
 */
guint
msg_message_event_get_n_ports (MsgMessageEvent *self)
{
  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), 0);

  return self->n_ports;
}

/**
 * msg_message_event_get_port:
 * @self: a #MsgMessageEvent
 * @index_: the index of the port
 *
 * Gets one of the ports transferred with the message. An index past the
 * last port is not an error: it gives %NULL, so that code in any language
 * can walk the ports until it gets %NULL (the Python override raises
 * `IndexError` instead, as a Python sequence does).
 *
 * Returns: (transfer none) (nullable): the port at @index_, or %NULL if
 *   @index_ is msg_message_event_get_n_ports() or more
 * Since: 1.0
 */
MsgPortMain *
msg_message_event_get_port (MsgMessageEvent *self,
                            guint            index_)
{
  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), NULL);

  if (index_ >= self->n_ports)
    return NULL;

  return self->ports[index_];
}

/**
 * msg_message_event_get_port_list:
 * @self: a #MsgMessageEvent
 *
 * Gets the ports transferred with the message as a #GListModel of
 * #MsgPortMain, in the order the sender listed them: the same ports as
 * msg_message_event_get_ports(). The list never changes.
 *
 * Returns: (transfer none): the ports, owned by @self; an empty list if
 *   there are none
 * Since: 1.0
 */
GListModel *
msg_message_event_get_port_list (MsgMessageEvent *self)
{
  GListModel *list;
  GListStore *store;

  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), NULL);

  list = g_atomic_pointer_get (&self->port_list);
  if (list != NULL)
    return list;

  /* Made on first use, so that events nobody asks for cost nothing; an
   * event may be read from several threads, so the first one wins. */
  store = g_list_store_new (MSG_TYPE_PORT_MAIN);
  if (self->n_ports > 0)
    g_list_store_splice (store, 0, 0, (gpointer *) self->ports, self->n_ports);
  if (!g_atomic_pointer_compare_and_exchange (&self->port_list, NULL, G_LIST_MODEL (store)))
    g_object_unref (store);

  return g_atomic_pointer_get (&self->port_list);
}

/**
 * msg_message_event_get_unix_fd_list:
 * @self: a #MsgMessageEvent
 *
 * Gets the descriptors that came with the message, posted with
 * msg_port_main_post_with_unix_fd_list(): the `h` (handle) values in
 * the message index this list, as in GDBus. They are the receiver's own
 * descriptors, duplicates of the sender's (so their numbers differ), in
 * the order the sender listed them. A handle of -1 stands for no
 * descriptor.
 *
 * The list, and the descriptors in it, belong to @self: they are closed
 * when the event goes, or is reused for a later message (see
 * #MsgMessageEvent), unless they were taken. Take one with
 * g_unix_fd_list_get(), which returns a duplicate of your own, or all of
 * them with g_unix_fd_list_steal_fds(). A handler that keeps the list
 * with g_object_ref() keeps the descriptors open.
 *
 * %NULL if the message came without descriptors: posted with
 * msg_port_main_post_message(), or with an empty or %NULL list.
 *
 * Returns: (transfer none) (nullable): the descriptors, owned by @self,
 *   or %NULL
 * Since: 1.2
 */
GUnixFDList *
msg_message_event_get_unix_fd_list (MsgMessageEvent *self)
{
  g_return_val_if_fail (MSG_IS_MESSAGE_EVENT (self), NULL);

  return self->fd_list;
}
