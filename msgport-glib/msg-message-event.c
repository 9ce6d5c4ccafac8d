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
 * From C, msg_message_event_get_ports() gives them as an array. Bindings
 * also have #MsgMessageEvent:ports, a #GListModel, so that `event.ports`
 * works as it does in the DOM: in JavaScript it is iterable
 * (`const [port] = event.ports;`), and the Python override of this
 * class makes `event.ports` a list and `event.data` the message.
 */

struct _MsgMessageEvent
{
  GObject       parent_instance;

  GVariant     *data;     /* (owned) (nullable) */
  MsgPortMain **ports;    /* (owned) (array length=n_ports zero-terminated=1) (nullable) */
  guint         n_ports;
  GListModel   *port_list; /* (owned) (nullable) (atomic): made on first use */
};

enum {
  PROP_0,
  PROP_DATA,
  PROP_N_PORTS,
  PROP_PORTS,
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

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
msg_message_event_init (MsgMessageEvent *self)
{
}

/* Takes @data and @ports (a NULL-terminated array of @n_ports ports, or
 * NULL if there are none). */
MsgMessageEvent *
msg_message_event_new_take (GVariant     *data,
                            MsgPortMain **ports,
                            guint         n_ports)
{
  MsgMessageEvent *self = g_object_new (MSG_TYPE_MESSAGE_EVENT, NULL);

  msg_message_event_reset_take (self, data, ports, n_ports);
  return self;
}

/* Fills an empty event (new, or given back by msg_message_event_recycle()). */
void
msg_message_event_reset_take (MsgMessageEvent  *self,
                              GVariant         *data,
                              MsgPortMain     **ports,
                              guint             n_ports)
{
  g_assert (self->data == NULL && self->ports == NULL && self->port_list == NULL);

  self->data = data;
  self->ports = ports;
  self->n_ports = n_ports;
}

/* Called by the dispatcher after emission, holding the only reference it
 * knows of. If nobody else holds one and nothing is attached to it (no
 * handler kept the event, no binding wraps it, no weak reference), empties
 * @self and returns TRUE: the dispatcher uses it again for
 * the next message, saving an object's construction and finalization per
 * message. Otherwise drops that reference and returns FALSE. */
gboolean
msg_message_event_recycle (MsgMessageEvent *self)
{
  GObject *object = G_OBJECT (self);

  /* Weak references, toggle references (bindings) and data attached to the
   * event all live in its qdata: such an event keeps its identity. */
  if (g_atomic_int_get (&object->ref_count) != 1 ||
      ((guintptr) g_atomic_pointer_get (&object->qdata) & ~(guintptr) G_DATALIST_FLAGS_MASK) != 0)
    {
      g_object_unref (self);
      return FALSE;
    }

  msg_message_event_clear (self);
  return TRUE;
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
