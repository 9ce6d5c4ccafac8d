/* parent-child.c: a child process with a parent port
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The parent spawns a child process (this same program, with --child) and
 * hands it a port with msg_port_main_new_for_launcher(). It sends the child
 * sentences over that port; the child finds its end with
 * msg_port_main_get_parent_port() and answers each with its number of
 * words. When all the answers are in, the parent closes the port: the child
 * sees ::close and exits, and the parent waits for it.
 *
 *   parent-child          the parent
 *   parent-child --child  the child, as the parent spawns it
 */

#include <stdlib.h>

#include <msgport-glib.h>

static const char * const sentences[] = {
  "ports move between processes with their messages",
  "one socket per channel",
  "hello",
};
static const guint expected_words[] = { 7, 4, 1 };

/* The child ------------------------------------------------------------- */

static void
child_on_job (MsgPortMain     *parent,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  const char *text = g_variant_get_string (msg_message_event_get_data (event), NULL);
  g_auto(GStrv) words = g_strsplit (text, " ", -1);
  guint n_words = 0;

  for (guint i = 0; words[i] != NULL; i++)
    if (words[i][0] != '\0')
      n_words++;

  g_print ("  child:  counted %u words in \"%s\"\n", n_words, text);
  msg_port_main_post (parent, g_variant_new ("(su)", text, n_words), NULL);
}

static void
child_on_close (MsgPortMain *parent,
                gpointer     user_data)
{
  GMainLoop *loop = user_data;

  g_print ("  child:  the parent closed the port; exiting\n");
  g_main_loop_quit (loop);
}

static int
run_child (void)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  /* Set up by the parent's msg_port_main_new_for_launcher(). */
  MsgPortMain *parent = msg_port_main_get_parent_port ();

  if (parent == NULL)
    {
      g_printerr ("parent-child --child: not spawned with a parent port\n");
      return EXIT_FAILURE;
    }

  g_signal_connect (parent, "message", G_CALLBACK (child_on_job), NULL);
  g_signal_connect (parent, "close", G_CALLBACK (child_on_close), loop);
  msg_port_main_start (parent);
  g_main_loop_run (loop);

  return EXIT_SUCCESS;
}

/* The parent ------------------------------------------------------------ */

typedef struct
{
  GMainLoop *loop;
  guint      n_answers;
  gboolean   wrong_answer;
  gboolean   port_closed;
  gboolean   child_exited;
  gboolean   child_ok;
} Parent;

static void
parent_maybe_quit (Parent *parent)
{
  if (parent->port_closed && parent->child_exited)
    g_main_loop_quit (parent->loop);
}

static void
parent_on_answer (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Parent *parent = user_data;
  const char *text;
  guint32 n_words;

  g_variant_get (msg_message_event_get_data (event), "(&su)", &text, &n_words);
  g_print ("parent:   \"%s\" has %u words\n", text, n_words);
  if (n_words != expected_words[parent->n_answers])
    parent->wrong_answer = TRUE;

  if (++parent->n_answers == G_N_ELEMENTS (sentences))
    {
      g_print ("parent:   all answers in; closing the port\n");
      msg_port_main_close (port);
    }
}

static void
parent_on_close (MsgPortMain *port,
                 gpointer     user_data)
{
  Parent *parent = user_data;

  parent->port_closed = TRUE;
  parent_maybe_quit (parent);
}

static void
parent_on_child_exited (GObject      *source,
                        GAsyncResult *result,
                        gpointer      user_data)
{
  Parent *parent = user_data;
  g_autoptr(GError) error = NULL;

  parent->child_ok = g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error);
  if (error != NULL)
    g_printerr ("parent:   the child failed: %s\n", error->message);
  parent->child_exited = TRUE;
  parent_maybe_quit (parent);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(MsgPortMain) port = NULL;
  g_autoptr(GSubprocess) child = NULL;
  g_autoptr(GError) error = NULL;
  Parent parent = { NULL, 0, FALSE, FALSE, FALSE, FALSE };

  if (argc > 1 && g_str_equal (argv[1], "--child"))
    return run_child ();

  g_print ("msgport-glib %u.%u.%u parent and child process demo (C)\n",
           msg_get_major_version (), msg_get_minor_version (), msg_get_micro_version ());

  /* The port's other end becomes descriptor 3 of the child. */
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  port = msg_port_main_new_for_launcher (launcher, -1, &error);
  if (port == NULL)
    g_error ("%s", error->message);
  child = g_subprocess_launcher_spawn (launcher, &error, argv[0], "--child", NULL);
  if (child == NULL)
    g_error ("%s", error->message);
  /* Closes our copy of the child's end, so that if the child died, our
   * port would see it (::close, with MSG_PORT_ERROR_PEER_GONE). */
  g_clear_object (&launcher);

  parent.loop = g_main_loop_new (NULL, FALSE);
  g_signal_connect (port, "message", G_CALLBACK (parent_on_answer), &parent);
  g_signal_connect (port, "close", G_CALLBACK (parent_on_close), &parent);
  msg_port_main_start (port);

  g_print ("parent:   spawned a child; handing it %u sentences\n",
           (guint) G_N_ELEMENTS (sentences));
  for (guint i = 0; i < G_N_ELEMENTS (sentences); i++)
    msg_port_main_post (port, g_variant_new_string (sentences[i]), NULL);

  g_subprocess_wait_check_async (child, NULL, parent_on_child_exited, &parent);
  g_main_loop_run (parent.loop);
  g_main_loop_unref (parent.loop);

  if (parent.n_answers != G_N_ELEMENTS (sentences) || parent.wrong_answer || !parent.child_ok)
    {
      g_printerr ("demo failed\n");
      return EXIT_FAILURE;
    }
  g_print ("parent:   the child exited; done\n");
  return EXIT_SUCCESS;
}
