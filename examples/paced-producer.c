/* paced-producer.c: a fast producer paced by a slow consumer thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The main thread produces 2,000 messages of 1 KiB as fast as it can; a
 * worker thread consumes them, slowly. Without flow control the backlog
 * would grow to everything not yet consumed. With a high-water mark of
 * 16 KiB the producer posts while its port is writable and then waits,
 * with msg_port_main_wait_writable_async(), until the consumer has taken
 * enough: the backlog never exceeds the mark. The producer's own port is
 * started, so that ::drain tells it when the backlog fell below the
 * low-water mark (half the mark), in its own thread.
 *
 *   paced-producer [N]
 */

#include <stdlib.h>
#include <string.h>

#include <msgport-glib.h>

#define MESSAGE_BYTES  1024
#define MARK           (16 * MESSAGE_BYTES)

typedef struct
{
  MsgPortMain *port;      /* (owned): the producer's end */
  GMainLoop   *loop;
  guint        n;         /* messages to produce */
  guint        posted;
  guint64      max_buffered;
  guint        drains;
} Producer;

typedef struct
{
  MsgPortMain  *port;     /* (owned): the consumer's end */
  GMainContext *context;
  GMainLoop    *loop;
  guint         received;
} Consumer;

static void produce (Producer *producer);

/* --- the consumer, in its own thread --------------------------------------- */

static void
consumer_on_message (MsgPortMain     *port,
                     MsgMessageEvent *event,
                     gpointer         user_data)
{
  Consumer *consumer = user_data;

  /* Slow work: a consumer much slower than its producer. */
  g_usleep (20);
  consumer->received++;
}

static void
consumer_on_close (MsgPortMain *port,
                   gpointer     user_data)
{
  Consumer *consumer = user_data;

  g_main_loop_quit (consumer->loop);
}

static gpointer
consumer_thread (gpointer data)
{
  Consumer *consumer = data;

  g_main_context_push_thread_default (consumer->context);
  g_signal_connect (consumer->port, "message", G_CALLBACK (consumer_on_message), consumer);
  g_signal_connect (consumer->port, "close", G_CALLBACK (consumer_on_close), consumer);
  msg_port_main_start (consumer->port);
  g_main_loop_run (consumer->loop);
  g_main_context_pop_thread_default (consumer->context);
  return NULL;
}

/* --- the producer, in the main thread -------------------------------------- */

static GVariant *
new_message (guint i)
{
  guint8 *data = g_malloc (MESSAGE_BYTES);

  memset (data, (int) (i & 0xff), MESSAGE_BYTES);
  return g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, data, MESSAGE_BYTES,
                                  TRUE, g_free, data);
}

static void
on_writable (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Producer *producer = user_data;
  GError *error = NULL;

  if (!msg_port_main_wait_writable_finish (MSG_PORT_MAIN (source), result, &error))
    {
      /* The consumer went away: its close reason. */
      g_printerr ("Stopped: %s\n", error->message);
      g_error_free (error);
      g_main_loop_quit (producer->loop);
      return;
    }
  produce (producer);
}

/* Posts while the port is writable, then waits until it is again. */
static void
produce (Producer *producer)
{
  while (producer->posted < producer->n && msg_port_main_is_writable (producer->port))
    {
      /* Posting never blocks nor fails because of the mark: the port only
       * says when it is time to wait. */
      msg_port_main_post (producer->port, new_message (producer->posted), NULL);
      producer->posted++;
      producer->max_buffered = MAX (producer->max_buffered,
                                    msg_port_main_get_buffered_amount (producer->port));
    }

  if (producer->posted < producer->n)
    {
      msg_port_main_wait_writable_async (producer->port, NULL, on_writable, producer);
      return;
    }

  /* All posted: close, which delivers everything before the end. */
  msg_port_main_close (producer->port);
}

static void
producer_on_drain (MsgPortMain *port,
                   gpointer     user_data)
{
  Producer *producer = user_data;

  producer->drains++;
}

static void
producer_on_close (MsgPortMain *port,
                   gpointer     user_data)
{
  Producer *producer = user_data;

  g_main_loop_quit (producer->loop);
}

int
main (int    argc,
      char **argv)
{
  MsgChannelMain *channel = msg_channel_main_new ();
  Producer producer = { 0 };
  Consumer consumer = { 0 };
  GThread *thread;

  producer.n = argc > 1 ? (guint) strtoul (argv[1], NULL, 10) : 2000;
  producer.port = g_object_ref (msg_channel_main_get_port1 (channel));
  producer.loop = g_main_loop_new (NULL, FALSE);
  consumer.port = g_object_ref (msg_channel_main_get_port2 (channel));
  consumer.context = g_main_context_new ();
  consumer.loop = g_main_loop_new (consumer.context, FALSE);
  g_object_unref (channel);

  /* Flow control: at most 16 KiB of messages buffered. */
  msg_port_main_set_high_water_mark (producer.port, MARK);
  g_signal_connect (producer.port, "drain", G_CALLBACK (producer_on_drain), &producer);
  g_signal_connect (producer.port, "close", G_CALLBACK (producer_on_close), &producer);
  msg_port_main_start (producer.port);

  thread = g_thread_new ("consumer", consumer_thread, &consumer);
  produce (&producer);
  g_main_loop_run (producer.loop);
  g_thread_join (thread);

  g_print ("Produced %u messages, consumed %u; at most %" G_GUINT64_FORMAT
           " bytes buffered (mark %d)\n",
           producer.posted, consumer.received, producer.max_buffered, MARK);
  if (consumer.received != producer.n || producer.max_buffered > MARK ||
      (producer.n > MARK / MESSAGE_BYTES && producer.drains == 0))
    return EXIT_FAILURE;

  g_object_unref (producer.port);
  g_object_unref (consumer.port);
  g_main_loop_unref (producer.loop);
  g_main_loop_unref (consumer.loop);
  g_main_context_unref (consumer.context);
  return EXIT_SUCCESS;
}
