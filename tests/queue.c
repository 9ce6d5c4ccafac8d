/* queue.c: the ring an endpoint queues its messages in
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * White-box: a plain message is queued as its GVariant, anything else in
 * an envelope marked in the pointer; the ring keeps its order, and each
 * item's size with it, when it grows with its items wrapped around, keeps
 * its memory between bursts up to a bound and gives a larger one back once
 * it empties. Leaks (an item not freed by msg_queue_clear()) show under
 * valgrind and ASan.
 */

#include "msg-test-utils.h"
#include "msg-endpoint-private.h"

static MsgItem *
message_item (guint64 n)
{
  return msg_item_new_message (g_variant_ref_sink (g_variant_new_uint64 (n)));
}

static guint64
item_number (MsgItem *item)
{
  g_assert_false (msg_item_is_envelope (item));
  return g_variant_get_uint64 ((GVariant *) item);
}

/* Pops one item, checks it is message @n, and frees it. */
static void
pop_expect (MsgQueue *queue,
            guint64   n)
{
  MsgItem *item = msg_queue_pop (queue);

  g_assert_nonnull (item);
  g_assert_cmpuint (item_number (item), ==, n);
  msg_item_free (item);
}

/* The size a test queues message @n with: not its real one, so that the
 * queue is seen to give back what it was told. */
static gsize
told_size (guint64 n)
{
  return 1000 + n * 3;
}

/* Pops one item, checks it is message @n queued with told_size(), and
 * frees it. */
static void
pop_expect_sized (MsgQueue *queue,
                  guint64   n)
{
  gsize size = 0;
  MsgItem *item;

  g_assert_cmpuint (msg_queue_peek_size (queue, 0), ==, told_size (n));
  item = msg_queue_pop_sized (queue, &size);
  g_assert_nonnull (item);
  g_assert_cmpuint (item_number (item), ==, n);
  g_assert_cmpuint (size, ==, told_size (n));
  msg_item_free (item);
}

static void
push_sized (MsgQueue *queue,
            guint64   n)
{
  msg_queue_push_sized (queue, message_item (n), told_size (n));
}

static void
test_queue_items (void)
{
  MsgItem *plain = message_item (7);
  MsgItem *null_message = msg_item_new_message (NULL);
  MsgItem *close = msg_item_from_envelope (msg_envelope_new_close (NULL));
  MsgEnvelope *envelope;

  g_assert_false (msg_item_is_envelope (plain));
  g_assert_false (msg_item_is_close (plain));

  /* A NULL message has no GVariant to be: it travels in an envelope. */
  g_assert_true (msg_item_is_envelope (null_message));
  g_assert_false (msg_item_is_close (null_message));
  g_assert_null (msg_item_peek_envelope (null_message)->data);

  g_assert_true (msg_item_is_close (close));

  /* What the process transport does: a plain message is wrapped. */
  envelope = msg_item_steal_envelope (plain);
  g_assert_cmpint (envelope->kind, ==, MSG_ENVELOPE_MESSAGE);
  g_assert_cmpuint (envelope->n_ports, ==, 0);
  g_assert_cmpuint (g_variant_get_uint64 (envelope->data), ==, 7);
  msg_envelope_free (envelope);

  g_assert_true (msg_item_peek_envelope (null_message) == msg_item_steal_envelope (null_message));
  msg_item_free (null_message);
  msg_item_free (close);
  msg_item_free (NULL);
}

static void
test_queue_order_across_growth (void)
{
  MsgQueue queue = MSG_QUEUE_INIT;
  guint64 next_in = 0, next_out = 0;

  g_assert_null (msg_queue_pop (&queue));
  g_assert_null (queue.items);

  /* Fill the first ring, take some from the front, and refill it so that
   * its items wrap around: growing must keep them in order, each with its
   * size. */
  push_sized (&queue, next_in++);
  for (guint round = 0; round < 6; round++)
    {
      guint capacity = queue.capacity;

      while (queue.length < capacity)
        push_sized (&queue, next_in++);
      for (guint i = 0; i < capacity / 2; i++)
        pop_expect_sized (&queue, next_out++);
      while (queue.length < capacity)
        push_sized (&queue, next_in++);
      g_assert_cmpuint (queue.head + queue.length, >, queue.capacity);  /* wrapped */
      push_sized (&queue, next_in++);
      g_assert_cmpuint (queue.capacity, ==, capacity * 2);
      for (guint i = 0; i < queue.length; i++)
        g_assert_cmpuint (msg_queue_peek_size (&queue, i), ==, told_size (next_out + i));
    }

  while (next_out < next_in)
    pop_expect_sized (&queue, next_out++);
  g_assert_null (msg_queue_pop (&queue));
  g_assert_cmpuint (queue.length, ==, 0);
  msg_queue_clear (&queue);
}

/* Sizes the queue does not hold (64 KiB - 1 and more) are asked of the
 * item again; an item queued without one is asked as it is queued. */
static void
test_queue_sizes (void)
{
  MsgQueue queue = MSG_QUEUE_INIT;
  MsgItem *item;
  gsize size = 0;

  msg_queue_push_sized (&queue, message_item (1), 100000);
  msg_queue_push (&queue, message_item (2));
  msg_queue_push (&queue, msg_item_from_envelope (msg_envelope_new_close (NULL)));
  g_assert_cmpuint (msg_queue_peek_size (&queue, 0), ==, 8);
  g_assert_cmpuint (msg_queue_peek_size (&queue, 1), ==, 8);
  g_assert_cmpuint (msg_queue_peek_size (&queue, 2), ==, 0);
  item = msg_queue_pop_sized (&queue, &size);
  g_assert_cmpuint (item_number (item), ==, 1);
  g_assert_cmpuint (size, ==, 8);
  msg_item_free (item);
  item = msg_queue_pop_sized (&queue, &size);
  g_assert_cmpuint (item_number (item), ==, 2);
  g_assert_cmpuint (size, ==, 8);
  msg_item_free (item);
  item = msg_queue_pop_sized (&queue, &size);
  g_assert_true (msg_item_is_close (item));
  g_assert_cmpuint (size, ==, 0);
  msg_item_free (item);
  g_assert_null (msg_queue_pop_sized (&queue, &size));
  msg_queue_clear (&queue);
}

static void
test_queue_memory (void)
{
  MsgQueue queue = MSG_QUEUE_INIT;
  MsgQueue stolen;
  MsgItem **ring;

  /* A burst of 64 or fewer: the ring stays for the next one. */
  for (guint64 i = 0; i < 60; i++)
    msg_queue_push (&queue, message_item (i));
  g_assert_cmpuint (queue.capacity, ==, 64);
  ring = queue.items;
  for (guint64 i = 0; i < 60; i++)
    pop_expect (&queue, i);
  g_assert_true (queue.items == ring);
  g_assert_cmpuint (queue.capacity, ==, 64);
  g_assert_cmpuint (queue.head, ==, 0);

  /* A backlog past that: its ring shrinks back to 64 once it empties,
   * and works on. */
  for (guint64 i = 0; i < 1025; i++)
    msg_queue_push (&queue, message_item (i));
  g_assert_cmpuint (queue.capacity, ==, 2048);
  for (guint64 i = 0; i < 1025; i++)
    pop_expect (&queue, i);
  g_assert_nonnull (queue.items);
  g_assert_cmpuint (queue.capacity, ==, 64);
  for (guint64 i = 0; i < 100; i++)
    msg_queue_push (&queue, message_item (i));
  for (guint64 i = 0; i < 100; i++)
    pop_expect (&queue, i);
  g_assert_cmpuint (queue.capacity, ==, 64);

  /* Stealing leaves the queue empty and usable; clearing frees every
   * item, envelopes included. */
  msg_queue_push (&queue, message_item (1));
  msg_queue_push (&queue, msg_item_from_envelope (msg_envelope_new_close (NULL)));
  stolen = msg_queue_steal (&queue);
  g_assert_null (queue.items);
  g_assert_cmpuint (queue.length, ==, 0);
  g_assert_cmpuint (stolen.length, ==, 2);
  msg_queue_push (&queue, message_item (2));
  msg_queue_clear (&stolen);
  msg_queue_clear (&queue);
  g_assert_null (queue.items);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/queue/items", test_queue_items);
  g_test_add_func ("/queue/order-across-growth", test_queue_order_across_growth);
  g_test_add_func ("/queue/sizes", test_queue_sizes);
  g_test_add_func ("/queue/memory", test_queue_memory);

  return g_test_run ();
}
