/* message-event.c: what MsgMessageEvent gives bindings and C
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "msg-test-utils.h"

static void
test_port_list (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) a = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) b = msg_channel_main_new ();
  MsgPortMain *transfer[] = {
    msg_channel_main_get_port1 (a),
    msg_channel_main_get_port1 (b),
  };
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (channel));
  g_autoptr(GListModel) from_property = NULL;
  g_autoptr(GError) error = NULL;
  MsgMessageEvent *event;
  MsgPortMain **ports;
  GListModel *list;
  guint n_ports;

  g_test_summary ("MsgMessageEvent:ports lists the ports of get_ports(), in order");

  msg_port_main_start (msg_channel_main_get_port2 (channel));
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (channel), NULL,
                                             transfer, G_N_ELEMENTS (transfer), &error));
  g_assert_no_error (error);
  msg_test_wait_until (NULL, rec->events->len == 1);

  event = g_ptr_array_index (rec->events, 0);
  ports = msg_message_event_get_ports (event, &n_ports);
  g_assert_cmpuint (n_ports, ==, 2);

  list = msg_message_event_get_port_list (event);
  g_assert_true (G_IS_LIST_MODEL (list));
  g_assert_true (g_list_model_get_item_type (list) == MSG_TYPE_PORT_MAIN);
  g_assert_cmpuint (g_list_model_get_n_items (list), ==, 2);
  for (guint i = 0; i < n_ports; i++)
    {
      g_autoptr(MsgPortMain) item = g_list_model_get_item (list, i);

      g_assert_true (item == ports[i]);
      g_assert_true (item == msg_message_event_get_port (event, i));
    }

  /* The same list every time, and through the property. */
  g_assert_true (msg_message_event_get_port_list (event) == list);
  g_object_get (event, "ports", &from_property, NULL);
  g_assert_true (from_property == list);

  msg_port_main_close (msg_channel_main_get_port1 (channel));
  msg_test_wait_until (NULL, rec->n_close == 1);
}

static void
test_port_list_empty (void)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  g_autoptr(MsgRecorder) rec = msg_recorder_new (msg_channel_main_get_port2 (channel));
  MsgMessageEvent *event;

  msg_port_main_start (msg_channel_main_get_port2 (channel));
  msg_port_main_post (msg_channel_main_get_port1 (channel), g_variant_new_int32 (1), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);

  event = g_ptr_array_index (rec->events, 0);
  g_assert_cmpuint (g_list_model_get_n_items (msg_message_event_get_port_list (event)), ==, 0);
  g_assert_null (g_list_model_get_item (msg_message_event_get_port_list (event), 0));

  msg_port_main_close (msg_channel_main_get_port1 (channel));
  msg_test_wait_until (NULL, rec->n_close == 1);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/message-event/port-list", test_port_list);
  g_test_add_func ("/message-event/port-list/empty", test_port_list_empty);

  return g_test_run ();
}
