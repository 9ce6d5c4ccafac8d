/* msg-channel-main.c: a pair of entangled ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "msg-channel-main.h"
#include "msg-port-main-private.h"

/**
 * SECTION:msg-channel-main
 * @Title: MsgChannelMain
 * @Short_description: a pair of entangled ports
 * @See_also: #MsgPortMain
 *
 * A #MsgChannelMain creates two #MsgPortMain objects,
 * #MsgChannelMain:port1 and #MsgChannelMain:port2, entangled with each
 * other: what is posted on one arrives at the other. It is GLib's
 * `MessageChannel` (Electron's `MessageChannelMain`).
 *
 * A whole program: port2 prints what arrives on it, and the loop ends when
 * port1 closes the channel.
 *
 * |[<!-- language="C" -->
 * #include <msgport-glib.h>
 *
 * static void
 * on_message (MsgPortMain *port, MsgMessageEvent *event, gpointer user_data)
 * {
 *   g_print ("port2 got %s\n",
 *            g_variant_get_string (msg_message_event_get_data (event), NULL));
 * }
 *
 * int
 * main (void)
 * {
 *   g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
 *   g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
 *   MsgPortMain *port1 = msg_channel_main_get_port1 (channel);
 *   MsgPortMain *port2 = msg_channel_main_get_port2 (channel);
 *
 *   g_signal_connect (port2, "message", G_CALLBACK (on_message), NULL);
 *   g_signal_connect_swapped (port2, "close", G_CALLBACK (g_main_loop_quit), loop);
 *   msg_port_main_start (port2);
 *
 *   msg_port_main_post (port1, g_variant_new_string ("hello"), NULL);
 *   msg_port_main_close (port1);  // delivered after "hello"
 *   g_main_loop_run (loop);
 *   return 0;
 * }
 * ]|
 *
 * The channel only holds the two ports; dropping it drops its references
 * on them.
 */

struct _MsgChannelMain
{
  GObject      parent_instance;

  MsgPortMain *port1;   /* (owned) */
  MsgPortMain *port2;   /* (owned) */
};

enum {
  PROP_0,
  PROP_PORT1,
  PROP_PORT2,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (MsgChannelMain, msg_channel_main, G_TYPE_OBJECT)

static void
msg_channel_main_dispose (GObject *object)
{
  MsgChannelMain *self = MSG_CHANNEL_MAIN (object);

  g_clear_object (&self->port1);
  g_clear_object (&self->port2);

  G_OBJECT_CLASS (msg_channel_main_parent_class)->dispose (object);
}

static void
msg_channel_main_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  MsgChannelMain *self = MSG_CHANNEL_MAIN (object);

  switch (prop_id)
    {
    case PROP_PORT1:
      g_value_set_object (value, self->port1);
      break;

    case PROP_PORT2:
      g_value_set_object (value, self->port2);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
msg_channel_main_class_init (MsgChannelMainClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = msg_channel_main_dispose;
  object_class->get_property = msg_channel_main_get_property;

  /**
   * MsgChannelMain:port1:
   *
   * The first port, entangled with #MsgChannelMain:port2.
   *
   * Since: 1.0
   */
  properties[PROP_PORT1] =
    g_param_spec_object ("port1", NULL, NULL,
                         MSG_TYPE_PORT_MAIN,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * MsgChannelMain:port2:
   *
   * The second port, entangled with #MsgChannelMain:port1.
   *
   * Since: 1.0
   */
  properties[PROP_PORT2] =
    g_param_spec_object ("port2", NULL, NULL,
                         MSG_TYPE_PORT_MAIN,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
msg_channel_main_init (MsgChannelMain *self)
{
  MsgEndpoint *endpoint1 = msg_endpoint_new ();
  MsgEndpoint *endpoint2 = msg_endpoint_new ();

  msg_endpoint_entangle (endpoint1, endpoint2);
  self->port1 = msg_port_main_new_for_endpoint (endpoint1);
  self->port2 = msg_port_main_new_for_endpoint (endpoint2);
}

/**
 * msg_channel_main_new:
 *
 * Creates a channel: two new ports, entangled with each other, not
 * started.
 *
 * Returns: (transfer full): a new #MsgChannelMain
 * Since: 1.0
 */
MsgChannelMain *
msg_channel_main_new (void)
{
  return g_object_new (MSG_TYPE_CHANNEL_MAIN, NULL);
}

/**
 * msg_channel_main_get_port1:
 * @self: a #MsgChannelMain
 *
 * Gets the first port of the channel.
 *
 * Returns: (transfer none): #MsgChannelMain:port1
 * Since: 1.0
 */
MsgPortMain *
msg_channel_main_get_port1 (MsgChannelMain *self)
{
  g_return_val_if_fail (MSG_IS_CHANNEL_MAIN (self), NULL);

  return self->port1;
}

/**
 * msg_channel_main_get_port2:
 * @self: a #MsgChannelMain
 *
 * Gets the second port of the channel.
 *
 * Returns: (transfer none): #MsgChannelMain:port2
 * Since: 1.0
 */
MsgPortMain *
msg_channel_main_get_port2 (MsgChannelMain *self)
{
  g_return_val_if_fail (MSG_IS_CHANNEL_MAIN (self), NULL);

  return self->port2;
}
