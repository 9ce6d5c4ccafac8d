/* worker-thread.c: a worker thread reports progress through a port
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The main thread creates a channel and starts a worker thread with one of
 * its ports. The worker starts that port in its own GMainContext and works
 * in small steps, posting its progress after each one; when it is done it
 * closes its port. The main thread prints the progress. To cancel, the main
 * thread closes its own port: the worker sees ::close and stops early.
 *
 *   worker-thread                 run to the end
 *   worker-thread --cancel-at 30  cancel once 30 % is reported
 */

#include <stdlib.h>

#include <msgport-glib.h>

#define N_STEPS 100

typedef struct
{
  MsgPortMain  *port;      /* the worker's end, started in the worker */
  GMainLoop    *loop;
  guint         step;
} Worker;

/* One step of "work" per main-loop iteration of the worker's context. */
static gboolean
worker_step (gpointer user_data)
{
  Worker *worker = user_data;

  worker->step++;
  msg_port_main_post (worker->port, g_variant_new_uint32 (worker->step), NULL);
  if (worker->step < N_STEPS)
    return G_SOURCE_CONTINUE;

  /* Done: everything posted before close() is still delivered. */
  msg_port_main_close (worker->port);
  return G_SOURCE_REMOVE;
}

static void
worker_on_close (MsgPortMain *port,
                 gpointer     user_data)
{
  Worker *worker = user_data;

  /* Either we closed it when done, or the main thread cancelled. */
  g_main_loop_quit (worker->loop);
}

static gpointer
worker_thread (gpointer data)
{
  Worker *worker = data;
  GMainContext *context = g_main_context_new ();
  GSource *work = g_idle_source_new ();

  /* start() binds the port to the thread-default context of the caller. */
  g_main_context_push_thread_default (context);
  worker->loop = g_main_loop_new (context, FALSE);
  g_signal_connect (worker->port, "close", G_CALLBACK (worker_on_close), worker);
  msg_port_main_start (worker->port);

  g_source_set_callback (work, worker_step, worker, NULL);
  g_source_attach (work, context);
  g_main_loop_run (worker->loop);

  g_source_destroy (work);
  g_source_unref (work);
  g_main_loop_unref (worker->loop);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

typedef struct
{
  GMainLoop *loop;
  guint      progress;
  guint      cancel_at;
  gboolean   cancelled;
} Main;

static void
main_on_progress (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Main *state = user_data;

  /* After close() the messages that had already arrived are still
   * delivered: a cancelled job may report a little more progress. */
  if (state->cancelled)
    return;

  state->progress = g_variant_get_uint32 (msg_message_event_get_data (event));
  if (state->progress % 10 == 0)
    g_print ("progress: %u %%\n", state->progress);
  if (state->progress == state->cancel_at)
    {
      g_print ("cancelling\n");
      state->cancelled = TRUE;
      msg_port_main_close (port);
    }
}

static void
main_on_close (MsgPortMain *port,
               gpointer     user_data)
{
  Main *state = user_data;

  g_main_loop_quit (state->loop);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();
  MsgPortMain *port = msg_channel_main_get_port1 (channel);
  Worker worker = { msg_channel_main_get_port2 (channel), NULL, 0 };
  Main state = { g_main_loop_new (NULL, FALSE), 0, 0, FALSE };
  GThread *thread;

  if (argc == 3 && g_str_equal (argv[1], "--cancel-at"))
    state.cancel_at = (guint) g_ascii_strtoull (argv[2], NULL, 10);

  g_signal_connect (port, "message", G_CALLBACK (main_on_progress), &state);
  g_signal_connect (port, "close", G_CALLBACK (main_on_close), &state);
  msg_port_main_start (port);

  thread = g_thread_new ("worker", worker_thread, &worker);
  g_main_loop_run (state.loop);
  g_thread_join (thread);
  g_main_loop_unref (state.loop);

  if (state.cancelled)
    g_print ("cancelled at %u %%; the worker stopped after step %u\n",
             state.progress, worker.step);
  else if (state.progress == N_STEPS)
    g_print ("done\n");
  else
    return EXIT_FAILURE;
  return EXIT_SUCCESS;
}
