/* worker-demo.c: the main thread and a worker thread talking through ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The main thread creates a control channel and gives one end to a worker
 * thread, which starts it in its own GMainContext. Then it creates a second
 * channel for jobs and hands one of its ports to the worker *in a message*
 * on the control channel. The worker starts that port and answers each job
 * on it; when the main thread closes the job channel, the worker sees
 * ::close, says goodbye on the control channel and stops.
 */

#include <msgport-glib.h>

typedef struct
{
  MsgPortMain  *control;   /* the worker's end of the control channel */
  GMainLoop    *loop;
} Worker;

static void
worker_on_job (MsgPortMain     *jobs,
               MsgMessageEvent *event,
               gpointer         user_data)
{
  const char *text = g_variant_get_string (msg_message_event_get_data (event), NULL);
  g_auto(GStrv) words = g_strsplit_set (text, " ", -1);
  guint n_words = 0;

  for (guint i = 0; words[i] != NULL; i++)
    n_words += words[i][0] != '\0';

  g_print ("  worker: counted %u words in \"%s\"\n", n_words, text);
  msg_port_main_post (jobs, g_variant_new ("(su)", text, n_words), NULL);
}

static void
worker_on_jobs_closed (MsgPortMain *jobs,
                       gpointer     user_data)
{
  Worker *worker = user_data;

  g_print ("  worker: the job port was closed; saying goodbye\n");
  msg_port_main_post (worker->control, g_variant_new_string ("bye"), NULL);
  msg_port_main_close (worker->control);
}

static void
worker_on_control (MsgPortMain     *control,
                   MsgMessageEvent *event,
                   gpointer         user_data)
{
  Worker *worker = user_data;
  MsgPortMain *jobs;

  if (msg_message_event_get_n_ports (event) != 1)
    return;

  /* The port came in the message: start it here, in the worker's context. */
  jobs = msg_message_event_get_port (event, 0);
  g_print ("  worker: received a port in a message; starting it in the worker thread\n");
  g_signal_connect (jobs, "message", G_CALLBACK (worker_on_job), worker);
  g_signal_connect (jobs, "close", G_CALLBACK (worker_on_jobs_closed), worker);
  msg_port_main_start (jobs);
}

static void
worker_on_control_closed (MsgPortMain *control,
                          gpointer     user_data)
{
  Worker *worker = user_data;

  g_main_loop_quit (worker->loop);
}

static gpointer
worker_thread (gpointer data)
{
  Worker *worker = data;
  GMainContext *context = g_main_context_new ();

  /* start() binds a port to the thread-default context of the caller. */
  g_main_context_push_thread_default (context);
  worker->loop = g_main_loop_new (context, FALSE);
  g_signal_connect (worker->control, "message", G_CALLBACK (worker_on_control), worker);
  g_signal_connect (worker->control, "close", G_CALLBACK (worker_on_control_closed), worker);
  msg_port_main_start (worker->control);

  g_main_loop_run (worker->loop);

  g_main_loop_unref (worker->loop);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

typedef struct
{
  GMainLoop *loop;
  guint      n_answers;
  gboolean   worker_said_bye;
} Main;

static void
main_on_answer (MsgPortMain     *jobs,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  Main *state = user_data;
  const char *text;
  guint n_words;

  g_variant_get (msg_message_event_get_data (event), "(&su)", &text, &n_words);
  g_print ("main:   \"%s\" has %u words\n", text, n_words);
  if (++state->n_answers == 3)
    {
      g_print ("main:   all answers in; closing the job channel\n");
      msg_port_main_close (jobs);
    }
}

static void
main_on_control (MsgPortMain     *control,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  Main *state = user_data;

  g_print ("main:   the worker says \"%s\"\n",
           g_variant_get_string (msg_message_event_get_data (event), NULL));
  state->worker_said_bye = TRUE;
}

static void
main_on_control_closed (MsgPortMain *control,
                        gpointer     user_data)
{
  Main *state = user_data;

  g_main_loop_quit (state->loop);
}

int
main (int    argc,
      char **argv)
{
  static const char *const sentences[] = {
    "ports move between threads with their messages",
    "one wake-up per batch",
    "hello",
  };
  g_autoptr(MsgChannelMain) control = msg_channel_main_new ();
  g_autoptr(MsgChannelMain) jobs = msg_channel_main_new ();
  MsgPortMain *job_port2 = msg_channel_main_get_port2 (jobs);
  Worker worker = { msg_channel_main_get_port2 (control), NULL };
  Main state = { g_main_loop_new (NULL, FALSE), 0, FALSE };
  g_autoptr(GError) error = NULL;
  GThread *thread;

  g_print ("msgport-glib %s worker demo\n", MSG_VERSION_S);

  thread = g_thread_new ("worker", worker_thread, &worker);

  g_signal_connect (msg_channel_main_get_port1 (control), "message",
                    G_CALLBACK (main_on_control), &state);
  g_signal_connect (msg_channel_main_get_port1 (control), "close",
                    G_CALLBACK (main_on_control_closed), &state);
  msg_port_main_start (msg_channel_main_get_port1 (control));

  /* Jobs can be posted before the worker has the port: they are queued
   * on it and travel with it. */
  for (guint i = 0; i < G_N_ELEMENTS (sentences); i++)
    msg_port_main_post (msg_channel_main_get_port1 (jobs),
                        g_variant_new_string (sentences[i]), NULL);

  g_print ("main:   handing a port to the worker in a message\n");
  if (!msg_port_main_post_message (msg_channel_main_get_port1 (control),
                                   g_variant_new_string ("here is your job port"),
                                   &job_port2, 1, &error))
    g_error ("could not hand the port over: %s", error->message);

  g_signal_connect (msg_channel_main_get_port1 (jobs), "message",
                    G_CALLBACK (main_on_answer), &state);
  msg_port_main_start (msg_channel_main_get_port1 (jobs));

  g_main_loop_run (state.loop);
  g_thread_join (thread);
  g_main_loop_unref (state.loop);

  if (state.n_answers != G_N_ELEMENTS (sentences) || !state.worker_said_bye)
    {
      g_printerr ("demo failed: %u answers\n", state.n_answers);
      return 1;
    }
  g_print ("main:   done\n");
  return 0;
}
