/* signal-floor.c: the glib-queue floor with one GObject signal a message
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   signal-floor same-thread|cross-thread WORKLOAD throughput [N]
 *
 * The anchors' glib-queue floor (../../shared/bench/anchors, limits/
 * glib-floor.c: one GAsyncQueue and one GSource per end, a wake-up only
 * when the queue was empty, one dispatch drains the queue), except that
 * each message reaches its handler the way a ::message handler gets it
 * from a started MsgPortMain: one g_signal_emit() of a "message" signal
 * on a GObject per end, carrying an event GObject that is reused from
 * message to message, with a va_list marshaller that takes no reference
 * (as msgport-glib's). Nothing else is added: no flow control, no
 * counters, no ports.
 *
 * So it is the floor of the row "same-thread W-small with ::message":
 * what GLib itself costs, queue and signal, without msgport-glib. bench/
 * interleave takes it as the anchor "glib-queue-signal". It prints the
 * anchors' JSON line, with the anchor "glib-queue-signal".
 *
 * End A (main thread) sends in the anchors' bursts; end B receives. B
 * posts a "ready" message, (), first; after the last message it posts its
 * receipt time, a "t".
 */

#include <glib-object.h>

#include "bench.h"

/* The event: what MsgMessageEvent is to a handler, reused. */
typedef struct
{
  GObject   parent_instance;
  GVariant *data;  /* (not owned): the message being emitted */
} FloorEvent;

typedef struct
{
  GObjectClass parent_class;
} FloorEventClass;

static GType floor_event_get_type (void);
G_DEFINE_TYPE (FloorEvent, floor_event, G_TYPE_OBJECT)

static void
floor_event_class_init (FloorEventClass *klass)
{
}

static void
floor_event_init (FloorEvent *self)
{
}

typedef void (*EndHandler) (GVariant *message);

/* An end: a GObject with the ::message signal, its queue and its source. */
typedef struct
{
  GObject       parent_instance;
  GMainContext *context;
  GAsyncQueue  *queue;
  GSource      *source;
  FloorEvent   *event;    /* (owned): reused for every message */
  EndHandler    handler;
} FloorEnd;

typedef struct
{
  GObjectClass parent_class;
} FloorEndClass;

static GType floor_end_get_type (void);
G_DEFINE_TYPE (FloorEnd, floor_end, G_TYPE_OBJECT)

static guint message_signal;

/* A copy of msgport-glib's va_list marshaller of ::message
 * (msg_port_main_marshal_message_v(), static there), on purpose: the floor
 * links no msgport-glib, and must emit as it does. The caller holds the
 * event for the whole emission, so no reference is taken on it. */
static void
floor_marshal_message_v (GClosure *closure,
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
  gpointer event;
  va_list args_copy;

  G_VA_COPY (args_copy, args);
  event = va_arg (args_copy, gpointer);
  va_end (args_copy);

  callback = (MessageFunc) (marshal_data != NULL ? marshal_data : cc->callback);
  if (G_CCLOSURE_SWAP_DATA (closure))
    callback (closure->data, event, instance);
  else
    callback (instance, event, closure->data);
}

static void
floor_end_class_init (FloorEndClass *klass)
{
  message_signal = g_signal_new ("message", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                 0, NULL, NULL, g_cclosure_marshal_VOID__OBJECT,
                                 G_TYPE_NONE, 1, floor_event_get_type ());
  g_signal_set_va_marshaller (message_signal, G_TYPE_FROM_CLASS (klass),
                              floor_marshal_message_v);
}

static void
floor_end_init (FloorEnd *self)
{
}

typedef struct
{
  GSource   parent;
  FloorEnd *end;
} QueueSource;

static gboolean
queue_source_prepare (GSource *source,
                      gint    *timeout)
{
  *timeout = -1;
  return g_async_queue_length (((QueueSource *) source)->end->queue) > 0;
}

static gboolean
queue_source_check (GSource *source)
{
  return g_async_queue_length (((QueueSource *) source)->end->queue) > 0;
}

static gboolean
queue_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  FloorEnd *end = ((QueueSource *) source)->end;
  GVariant *message;

  while ((message = g_async_queue_try_pop (end->queue)) != NULL)
    {
      end->event->data = message;
      g_signal_emit (end, message_signal, 0, end->event);
      end->event->data = NULL;
      g_variant_unref (message);
    }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs queue_source_funcs = {
  .prepare = queue_source_prepare,
  .check = queue_source_check,
  .dispatch = queue_source_dispatch,
};

static BenchConfig config;
static FloorEnd *end_a, *end_b;
static guint64 count;      /* B: messages received */
static gint64 t_start;     /* A: first post */
static gboolean finished;  /* A: result printed */

static void
on_message (FloorEnd   *end,
            FloorEvent *event,
            gpointer    user_data)
{
  end->handler (event->data);
}

static FloorEnd *
floor_end_new (GMainContext *context,
               EndHandler    handler)
{
  FloorEnd *end = g_object_new (floor_end_get_type (), NULL);

  end->context = context;
  end->handler = handler;
  end->queue = g_async_queue_new ();
  end->event = g_object_new (floor_event_get_type (), NULL);
  end->source = g_source_new (&queue_source_funcs, sizeof (QueueSource));
  ((QueueSource *) end->source)->end = end;
  g_source_attach (end->source, context);
  g_signal_connect (end, "message", G_CALLBACK (on_message), NULL);
  return end;
}

static void
floor_end_free (FloorEnd *end)
{
  g_source_destroy (end->source);
  g_source_unref (end->source);
  g_async_queue_unref (end->queue);
  g_object_unref (end->event);
  g_object_unref (end);
}

/* Sends @message (a floating reference is sunk) to @end; any thread. As
 * glib-floor's end_post(). */
static void
end_post (FloorEnd *end,
          GVariant *message)
{
  gboolean was_empty;

  message = g_variant_ref_sink (message);
  g_async_queue_lock (end->queue);
  was_empty = g_async_queue_length_unlocked (end->queue) <= 0;
  g_async_queue_push_unlocked (end->queue, message);
  g_async_queue_unlock (end->queue);
  if (was_empty && !g_main_context_is_owner (end->context))
    g_main_context_wakeup (end->context);
}

static void
b_receive (GVariant *message)
{
  if (bench_message_seq (message) != count)
    g_error ("message %" G_GUINT64_FORMAT " out of order", count);
  if (++count == config.n)
    end_post (end_a, g_variant_new_uint64 (bench_now_ns ()));
}

static void
post_to_b (GVariant *message,
           gpointer  data)
{
  end_post (end_b, message);
}

static const char *topology;

static void
a_receive (GVariant *message)
{
  if (g_variant_is_of_type (message, G_VARIANT_TYPE_UNIT))
    {
      t_start = bench_now_ns ();
      bench_send_bursts (&config, post_to_b, NULL);
    }
  else
    {
      bench_report_throughput ("glib-queue-signal", topology, &config,
                               g_variant_get_uint64 (message) - t_start);
      finished = TRUE;
    }
}

static gpointer
b_thread (gpointer data)
{
  GMainLoop *loop = data;
  GMainContext *context = g_main_loop_get_context (loop);

  g_main_context_push_thread_default (context);
  end_post (end_a, g_variant_new ("()"));
  g_main_loop_run (loop);
  g_main_context_pop_thread_default (context);
  return NULL;
}

int
main (int    argc,
      char **argv)
{
  const char *usage = "signal-floor same-thread|cross-thread WORKLOAD throughput [N]";
  GMainContext *context_b = NULL;
  GMainLoop *loop_b = NULL;
  GThread *thread = NULL;

  if (argc < 2)
    bench_usage_exit (usage);
  topology = argv[1];
  if (g_strcmp0 (topology, "same-thread") != 0 && g_strcmp0 (topology, "cross-thread") != 0)
    bench_usage_exit (usage);
  bench_parse_args (argc - 2, argv + 2, usage, &config);
  if (config.metric != BENCH_THROUGHPUT)
    bench_usage_exit (usage);

  end_a = floor_end_new (g_main_context_default (), a_receive);
  if (g_strcmp0 (topology, "same-thread") == 0)
    {
      end_b = floor_end_new (g_main_context_default (), b_receive);
      end_post (end_a, g_variant_new ("()"));
    }
  else
    {
      context_b = g_main_context_new ();
      loop_b = g_main_loop_new (context_b, FALSE);
      end_b = floor_end_new (context_b, b_receive);
      thread = g_thread_new ("end-b", b_thread, loop_b);
    }

  while (!finished)
    g_main_context_iteration (NULL, TRUE);

  if (thread != NULL)
    {
      g_main_loop_quit (loop_b);
      g_main_context_wakeup (context_b);
      g_thread_join (thread);
      g_main_loop_unref (loop_b);
    }
  floor_end_free (end_b);
  floor_end_free (end_a);
  g_clear_pointer (&context_b, g_main_context_unref);
  return 0;
}
