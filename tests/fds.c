/* fds.c: open file descriptors inside messages (GUnixFDList)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>

#include "msg-test-utils.h"
#include "wire/msg-wire-private.h"

/* Helpers ------------------------------------------------------------------ */

static void
make_pipe (int fds[2])
{
  GError *error = NULL;

  g_unix_open_pipe (fds, FD_CLOEXEC, &error);
  g_assert_no_error (error);
}

/* A list of duplicates of @n descriptors. */
static GUnixFDList *
fd_list_of (const int *fds,
            guint      n)
{
  GUnixFDList *list = g_unix_fd_list_new ();
  GError *error = NULL;

  for (guint i = 0; i < n; i++)
    {
      g_assert_cmpint (g_unix_fd_list_append (list, fds[i], &error), ==, (int) i);
      g_assert_no_error (error);
    }
  return list;
}

static gboolean
same_file (int a,
           int b)
{
  struct stat sa, sb;

  g_assert_cmpint (fstat (a, &sa), ==, 0);
  g_assert_cmpint (fstat (b, &sb), ==, 0);
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Writes a byte into @write_fd and reads it back from @read_fd: the two
 * are the ends of one pipe, and both work. */
static void
assert_pipe_works (int  write_fd,
                   int  read_fd,
                   char byte)
{
  char got = 0;

  g_assert_cmpint (write (write_fd, &byte, 1), ==, 1);
  g_assert_cmpint (read (read_fd, &got, 1), ==, 1);
  g_assert_cmpint (got, ==, byte);
}

static GUnixFDList *
event_fd_list (MsgRecorder *rec,
               guint        i)
{
  MsgMessageEvent *event;
  GUnixFDList *list;
  GUnixFDList *from_property = NULL;

  g_assert_cmpuint (i, <, rec->events->len);
  event = g_ptr_array_index (rec->events, i);
  list = msg_message_event_get_unix_fd_list (event);
  g_object_get (event, "unix-fd-list", &from_property, NULL);
  g_assert_true (list == from_property);
  g_clear_object (&from_property);
  return list;
}

/* What is open before a test: the default context's own descriptor
 * exists by then. */
static guint
baseline_fds (void)
{
  msg_test_start_symbolizer ();
  msg_test_drain (g_main_context_default ());
  return msg_test_count_fds ();
}

/* Same thread ------------------------------------------------------------- */

static void
test_fds_same_thread (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  MsgRecorder *rec = msg_recorder_new (port2);
  guint baseline = baseline_fds ();
  GUnixFDList *list, *got;
  const int *sent;
  int sent_copy[2];
  int pipe_fds[2];
  int write_fd, read_fd;
  GError *error = NULL;
  gint32 h_read, h_write, h_none;

  g_test_summary ("A message carries descriptors in-process: the h handles index the "
                  "list, the receiver gets its own duplicates in order, they work, the "
                  "sender may close its own at once, and nothing is left open after");

  make_pipe (pipe_fds);
  list = fd_list_of (pipe_fds, 2);
  sent = g_unix_fd_list_peek_fds (list, NULL);
  sent_copy[0] = sent[0];
  sent_copy[1] = sent[1];
  msg_port_main_start (port2);
  g_assert_true (msg_port_main_post_with_unix_fd_list (port1,
                                                       g_variant_new ("(shhh)", "pipe", 1, 0, -1),
                                                       NULL, 0, list, &error));
  g_assert_no_error (error);
  /* The caller's list and descriptors are still its own, unchanged... */
  g_assert_cmpint (g_unix_fd_list_get_length (list), ==, 2);
  g_assert_true (same_file (sent_copy[0], pipe_fds[0]));
  /* ...and it may close them all at once. */
  g_object_unref (list);
  close (pipe_fds[0]);
  close (pipe_fds[1]);

  msg_test_wait_until (NULL, rec->events->len == 1);
  got = event_fd_list (rec, 0);
  g_assert_nonnull (got);
  g_assert_cmpint (g_unix_fd_list_get_length (got), ==, 2);
  g_variant_get (msg_recorder_data (rec, 0), "(&shhh)", NULL, &h_write, &h_read, &h_none);
  g_assert_cmpint (h_none, ==, -1);
  /* Its own descriptors: made while the sender's were open, so other
   * numbers. */
  for (guint i = 0; i < 2; i++)
    for (guint j = 0; j < 2; j++)
      g_assert_cmpint (g_unix_fd_list_peek_fds (got, NULL)[i], !=, sent_copy[j]);
  write_fd = g_unix_fd_list_get (got, h_write, &error);
  g_assert_no_error (error);
  read_fd = g_unix_fd_list_get (got, h_read, &error);
  g_assert_no_error (error);
  assert_pipe_works (write_fd, read_fd, 'a');
  close (write_fd);
  close (read_fd);

  /* The event owns the rest: they go with it. */
  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (ch);
  msg_test_drain (NULL);
  msg_test_wait_for_fd_count (baseline);
}

static void
test_fds_without_list (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  MsgRecorder *rec = msg_recorder_new (port2);
  guint baseline = baseline_fds ();
  GUnixFDList *empty = g_unix_fd_list_new ();
  GError *error = NULL;

  g_test_summary ("Without a list, handles are plain integers and the event has no "
                  "list; an empty list is no list, and any handle but -1 is refused "
                  "against it");

  msg_port_main_start (port2);
  /* NULL: exactly post_message(), with handles of any value. */
  g_assert_true (msg_port_main_post_with_unix_fd_list (port1, g_variant_new_handle (7),
                                                       NULL, 0, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_post_with_unix_fd_list (port1, g_variant_new_handle (-1),
                                                       NULL, 0, empty, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_post_with_unix_fd_list (port1, NULL, NULL, 0, empty, &error));
  g_assert_no_error (error);
  g_assert_false (msg_port_main_post_with_unix_fd_list (port1, g_variant_new_handle (0),
                                                        NULL, 0, empty, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_clear_error (&error);
  msg_port_main_post (port1, g_variant_new_string ("last"), NULL);

  msg_test_wait_until (NULL, rec->events->len == 4);
  g_assert_cmpint (g_variant_get_handle (msg_recorder_data (rec, 0)), ==, 7);
  g_assert_cmpint (g_variant_get_handle (msg_recorder_data (rec, 1)), ==, -1);
  g_assert_null (msg_recorder_data (rec, 2));
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 3), NULL), ==, "last");
  for (guint i = 0; i < 4; i++)
    g_assert_null (event_fd_list (rec, i));

  g_object_unref (empty);
  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (ch);
  msg_test_wait_for_fd_count (baseline);
}

/* Refused handles ------------------------------------------------------------ */

typedef struct
{
  const char *path;
  const char *text;   /* the message, in GVariant text format */
} BadHandles;

/* Against a list of two descriptors. */
static const BadHandles bad_handles[] = {
  { "/fds/refused/past-the-end", "handle 2" },
  { "/fds/refused/negative", "handle -2" },
  { "/fds/refused/min", "handle -2147483648" },
  { "/fds/refused/in-tuple", "(handle 0, handle 1, handle 5)" },
  { "/fds/refused/in-array", "[handle 0, -1, 1, 2]" },
  { "/fds/refused/in-variant", "<(@s 'x', <handle 3>)>" },
  { "/fds/refused/in-dict", "{'a': <handle 0>, 'b': <[handle 9]>}" },
  { "/fds/refused/in-maybe", "@mh 2" },
};

static void
test_fds_refused (gconstpointer data)
{
  const BadHandles *bad = data;
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  MsgRecorder *rec = msg_recorder_new (port2);
  guint baseline = baseline_fds ();
  GVariant *message;
  GUnixFDList *list;
  int pipe_fds[2];
  GError *error = NULL;

  g_test_summary ("A handle that does not index the list (past its end, or below -1, "
                  "anywhere in the message) fails with DATA_CLONE: nothing is sent, no "
                  "port is neutered, no descriptor is left open");

  make_pipe (pipe_fds);
  list = fd_list_of (pipe_fds, 2);
  close (pipe_fds[0]);
  close (pipe_fds[1]);

  message = g_variant_parse (NULL, bad->text, NULL, NULL, &error);
  g_assert_no_error (error);
  msg_port_main_start (port2);
  g_assert_false (msg_port_main_post_with_unix_fd_list (port1, message, &moving, 1,
                                                        list, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_clear_error (&error);
  g_assert_false (msg_port_main_is_neutered (moving));
  g_assert_cmpint (g_unix_fd_list_get_length (list), ==, 2);

  /* Nothing was sent: the next message is the first to arrive. */
  msg_port_main_post (port1, g_variant_new_string ("next"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec, 0), NULL), ==, "next");
  g_assert_null (event_fd_list (rec, 0));

  /* On a closed port the handles are still checked. */
  msg_port_main_close (port1);
  g_assert_false (msg_port_main_post_with_unix_fd_list (port1, message, NULL, 0, list, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
  g_clear_error (&error);
  /* A neutered port checks nothing at all. */
  msg_port_main_post_message (port1, NULL, &moving, 1, NULL);
  g_assert_true (msg_port_main_is_neutered (moving));
  g_assert_true (msg_port_main_post_with_unix_fd_list (moving, message, NULL, 0, list, &error));
  g_assert_no_error (error);

  g_variant_unref (message);
  g_object_unref (list);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (ch);
  g_object_unref (other);
  msg_test_drain (NULL);
  msg_test_wait_for_fd_count (baseline);
}

/* Nothing leaks ------------------------------------------------------------ */

/* Posts @n messages, each with one descriptor (a duplicate of @fd), on
 * @port. */
static void
post_fd_messages (MsgPortMain *port,
                  int          fd,
                  guint        n)
{
  GUnixFDList *list = fd_list_of (&fd, 1);
  GError *error = NULL;

  for (guint i = 0; i < n; i++)
    {
      g_assert_true (msg_port_main_post_with_unix_fd_list (port,
                                                           g_variant_new ("(uh)", i, 0),
                                                           NULL, 0, list, &error));
      g_assert_no_error (error);
    }
  g_object_unref (list);
}

static void
test_fds_dropped_queue (gconstpointer data)
{
  gboolean drop = GPOINTER_TO_INT (data);
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = g_object_ref (msg_channel_main_get_port1 (ch));
  MsgPortMain *port2 = g_object_ref (msg_channel_main_get_port2 (ch));
  guint baseline = baseline_fds ();
  int pipe_fds[2];

  g_test_summary ("Descriptors queued on a port that is closed, or dropped, before it "
                  "was started are closed with its queue");

  make_pipe (pipe_fds);
  post_fd_messages (port1, pipe_fds[1], 20);
  close (pipe_fds[1]);
  g_assert_cmpuint (msg_test_count_fds (), ==, baseline + 1 + 20);

  g_object_unref (ch);
  if (drop)
    {
      /* The "forgot to start()" warning, which is the point here. */
      g_test_expect_message ("Msg", G_LOG_LEVEL_WARNING, "*never started*20 messages*");
      g_object_unref (port2);
      g_test_assert_expected_messages ();
    }
  else
    {
      msg_port_main_close (port2);
      g_object_unref (port2);
    }
  /* Every write end is closed: the pipe reads end-of-file. */
  msg_test_wait_for_fd_count (baseline + 1);
  {
    char byte;

    g_assert_cmpint (read (pipe_fds[0], &byte, 1), ==, 0);
  }
  close (pipe_fds[0]);
  g_object_unref (port1);
  msg_test_wait_for_fd_count (baseline);
}

typedef struct
{
  guint         n;
  GUnixFDList  *kept;   /* (owned) (nullable) */
} Counting;

static void
count_and_forget (MsgPortMain     *port,
                  MsgMessageEvent *event,
                  gpointer         user_data)
{
  Counting *counting = user_data;

  g_assert_nonnull (msg_message_event_get_unix_fd_list (event));
  /* Keep the list of the third one, not its event. */
  if (counting->n++ == 2)
    counting->kept = g_object_ref (msg_message_event_get_unix_fd_list (event));
}

static void
test_fds_dropped_events (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  guint baseline = baseline_fds ();
  Counting counting = { 0, NULL };
  int pipe_fds[2];
  guint n_open;
  gulong id;
  char byte;

  g_test_summary ("Descriptors of events nobody keeps are closed after their handler, "
                  "also when the event is reused for the next message; a handler that "
                  "keeps the list keeps them");

  id = g_signal_connect (port2, "message", G_CALLBACK (count_and_forget), &counting);
  make_pipe (pipe_fds);
  post_fd_messages (port1, pipe_fds[1], 10);
  close (pipe_fds[1]);
  msg_port_main_start (port2);
  msg_test_wait_until (NULL, counting.n == 10);
  msg_test_drain (NULL);
  /* One write end is left, in the list kept: the pipe does not read
   * end-of-file until it goes. */
  n_open = msg_test_count_fds ();
  g_clear_object (&counting.kept);
  g_assert_cmpuint (msg_test_count_fds (), ==, n_open - 1);
  g_assert_cmpint (read (pipe_fds[0], &byte, 1), ==, 0);
  close (pipe_fds[0]);

  g_signal_handler_disconnect (port2, id);
  msg_port_main_close (port1);
  g_object_unref (ch);
  msg_test_drain (NULL);
  msg_test_wait_for_fd_count (baseline);
}

/* Opens /dev/null until the process is out of descriptors, at most @max
 * times; returns the descriptors, or %NULL (all closed again) if it never
 * ran out (the limit is not enforced: valgrind emulates it). */
static GArray *
fill_descriptors (guint max)
{
  GArray *fillers = g_array_new (FALSE, FALSE, sizeof (int));

  for (guint i = 0; i < max; i++)
    {
      int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);

      if (fd >= 0)
        {
          g_array_append_val (fillers, fd);
          continue;
        }
      g_assert_cmpint (errno, ==, EMFILE);
      return fillers;
    }
  for (guint i = 0; i < fillers->len; i++)
    close (g_array_index (fillers, int, i));
  g_array_unref (fillers);
  return NULL;
}

static void
test_fds_out_of_descriptors (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgPortMain *port2 = msg_channel_main_get_port2 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  MsgRecorder *rec = msg_recorder_new (port2);
  guint baseline = baseline_fds ();
  struct rlimit saved, low;
  GUnixFDList *list;
  GArray *fillers;
  int pipe_fds[2];
  guint n_open;
  GError *error = NULL;

  g_test_summary ("A post whose descriptors cannot be duplicated (the process is out "
                  "of them) fails with TOO_MANY_OPEN_FILES after the first duplicate: "
                  "that one is closed, nothing is sent, nothing neutered");

  msg_port_main_start (port2);
  msg_test_drain (NULL);
  make_pipe (pipe_fds);
  list = fd_list_of (pipe_fds, 2);
  close (pipe_fds[0]);
  close (pipe_fds[1]);

  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &saved), ==, 0);
  low = saved;
  low.rlim_cur = MIN (saved.rlim_max, (rlim_t) msg_test_count_fds () + 32);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &low), ==, 0);
  fillers = fill_descriptors (4096);
  if (fillers == NULL)
    {
      g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &saved), ==, 0);
      g_test_skip ("RLIMIT_NOFILE is not enforced here (valgrind emulates it)");
    }
  else
    {
      /* Room for one duplicate, not two. */
      g_assert_cmpuint (fillers->len, >, 0);
      close (g_array_index (fillers, int, fillers->len - 1));
      g_array_set_size (fillers, fillers->len - 1);
      n_open = msg_test_count_fds ();

      g_assert_false (msg_port_main_post_with_unix_fd_list (port1,
                                                            g_variant_new ("(hh)", 0, 1),
                                                            &moving, 1, list, &error));
      g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_MANY_OPEN_FILES);
      g_clear_error (&error);
      g_assert_false (msg_port_main_is_neutered (moving));
      g_assert_cmpuint (msg_test_count_fds (), ==, n_open);

      for (guint i = 0; i < fillers->len; i++)
        close (g_array_index (fillers, int, i));
      g_array_unref (fillers);
      g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &saved), ==, 0);

      /* Nothing was sent; with descriptors to spare, the same post works. */
      g_assert_true (msg_port_main_post_with_unix_fd_list (port1,
                                                           g_variant_new ("(hh)", 0, 1),
                                                           NULL, 0, list, &error));
      g_assert_no_error (error);
      msg_test_wait_until (NULL, rec->events->len == 1);
      g_assert_cmpint (g_unix_fd_list_get_length (event_fd_list (rec, 0)), ==, 2);
    }

  g_object_unref (list);
  msg_port_main_close (port1);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (ch);
  g_object_unref (other);
  msg_test_drain (NULL);
  msg_test_wait_for_fd_count (baseline);
}

/* A port moved with descriptors queued on it ---------------------------------- */

typedef struct
{
  MsgPortMain   *port;       /* (owned) (nullable): the moved port, at home */
  gint           n_used;     /* (atomic): messages whose descriptor was used */
  gint           stopped;    /* (atomic) */
} Home;

/* In the home's context: the handler uses each descriptor that came. */
static void
home_message (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  Home *home = user_data;
  GUnixFDList *list = msg_message_event_get_unix_fd_list (event);
  GError *error = NULL;
  guint32 i;
  gint32 h;
  int fd;
  char byte;

  g_assert_nonnull (list);
  g_variant_get (msg_message_event_get_data (event), "(uh)", &i, &h);
  g_assert_cmpuint (i, ==, (guint) g_atomic_int_get (&home->n_used));
  fd = g_unix_fd_list_get (list, h, &error);
  g_assert_no_error (error);
  byte = 'A' + (char) (i % 26);
  g_assert_cmpint (write (fd, &byte, 1), ==, 1);
  close (fd);
  g_atomic_int_inc (&home->n_used);
  g_main_context_wakeup (NULL);
}

static gboolean
home_start (gpointer data)
{
  Home *home = data;

  g_signal_connect (home->port, "message", G_CALLBACK (home_message), home);
  msg_port_main_start (home->port);
  return G_SOURCE_REMOVE;
}

static gboolean
home_stop (gpointer data)
{
  Home *home = data;

  msg_port_main_close (home->port);
  g_clear_object (&home->port);
  g_atomic_int_set (&home->stopped, 1);
  g_main_context_wakeup (NULL);
  return G_SOURCE_REMOVE;
}

static void
test_fds_moved_port (gconstpointer data)
{
  gboolean to_thread = GPOINTER_TO_INT (data);
  MsgChannelMain *carrier = msg_channel_main_new ();
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *sender = msg_channel_main_get_port1 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  MsgRecorder *rec = msg_recorder_new (msg_channel_main_get_port2 (carrier));
  MsgTestWorker *worker = NULL;
  guint baseline = baseline_fds ();
  Home home = { NULL, 0, 0 };
  int pipe_fds[2];
  char bytes[30];

  g_test_summary ("Messages with descriptors queued on a port, and in flight to it, "
                  "when it is transferred (in-process, or to another thread) arrive at "
                  "its new home with their descriptors, which work there");

  make_pipe (pipe_fds);
  msg_port_main_start (msg_channel_main_get_port2 (carrier));
  /* Queued before the move... */
  post_fd_messages (sender, pipe_fds[1], 10);
  g_assert_true (msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL,
                                             &moving, 1, NULL));
  g_assert_true (msg_port_main_is_neutered (moving));
  /* ...in flight during it... */
  {
    GUnixFDList *list = fd_list_of (&pipe_fds[1], 1);

    for (guint i = 10; i < 20; i++)
      g_assert_true (msg_port_main_post_with_unix_fd_list (sender,
                                                           g_variant_new ("(uh)", i, 0),
                                                           NULL, 0, list, NULL));
    g_object_unref (list);
  }
  msg_test_wait_until (NULL, rec->events->len == 1);
  home.port = g_object_ref (msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0));
  g_ptr_array_set_size (rec->events, 0);

  if (to_thread)
    {
      worker = msg_test_worker_new ("home");
      msg_test_worker_invoke (worker, home_start, &home);
    }
  else
    home_start (&home);

  /* ...and after it. */
  {
    GUnixFDList *list = fd_list_of (&pipe_fds[1], 1);

    for (guint i = 20; i < 30; i++)
      g_assert_true (msg_port_main_post_with_unix_fd_list (sender,
                                                           g_variant_new ("(uh)", i, 0),
                                                           NULL, 0, list, NULL));
    g_object_unref (list);
  }
  close (pipe_fds[1]);

  msg_test_wait_until (NULL, g_atomic_int_get (&home.n_used) == 30);
  g_assert_cmpint (read (pipe_fds[0], bytes, sizeof bytes), ==, (int) sizeof bytes);
  for (guint i = 0; i < 30; i++)
    g_assert_cmpint (bytes[i], ==, 'A' + (char) (i % 26));

  if (to_thread)
    {
      msg_test_worker_invoke (worker, home_stop, &home);
      msg_test_wait_until (NULL, g_atomic_int_get (&home.stopped) == 1);
      msg_test_worker_free (worker);
    }
  else
    home_stop (&home);

  /* Every write end was closed: the pipe reads end-of-file at once (it
   * would fail with EAGAIN if one were still open). */
  g_assert_cmpint (fcntl (pipe_fds[0], F_SETFL, O_NONBLOCK), ==, 0);
  g_assert_cmpint (read (pipe_fds[0], bytes, 1), ==, 0);
  close (pipe_fds[0]);

  msg_port_main_close (msg_channel_main_get_port1 (carrier));
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (carrier);
  g_object_unref (ch);
  msg_test_drain (NULL);
  msg_test_wait_for_fd_count (baseline);
}

static void
test_fds_moved_never_adopted (void)
{
  MsgChannelMain *carrier = msg_channel_main_new ();
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *sender = g_object_ref (msg_channel_main_get_port1 (ch));
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  guint baseline = baseline_fds ();
  int pipe_fds[2];

  g_test_summary ("A port with descriptors queued on it, transferred in a message that "
                  "is never delivered: they are closed with it");

  make_pipe (pipe_fds);
  post_fd_messages (sender, pipe_fds[1], 5);
  close (pipe_fds[1]);
  close (pipe_fds[0]);
  /* The carrier's receiving end is never started: closing it drops the
   * message, the port in it, and its queue. */
  msg_port_main_post_message (msg_channel_main_get_port1 (carrier), NULL, &moving, 1, NULL);
  g_assert_cmpuint (msg_test_count_fds (), ==, baseline + 5);
  msg_port_main_close (msg_channel_main_get_port2 (carrier));
  msg_test_wait_for_fd_count (baseline);
  g_assert_true (msg_port_main_is_closed (sender));

  g_object_unref (sender);
  g_object_unref (carrier);
  g_object_unref (ch);
}

/* Across threads ------------------------------------------------------------ */

typedef struct
{
  GMainContext *context;   /* the worker's */
  MsgPortMain  *port;      /* (owned): started in the worker */
  gint          done;      /* (atomic) */
} Writer;

/* In the worker: writes its thread's name into the descriptor that came. */
static void
writer_message (MsgPortMain     *port,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  Writer *writer = user_data;
  GUnixFDList *list = msg_message_event_get_unix_fd_list (event);
  gint *stolen;
  gint n = 0;
  gint32 h;

  g_assert_true (g_main_context_is_owner (writer->context));
  g_variant_get (msg_message_event_get_data (event), "h", &h);
  /* Take them all: the event has none left to close. */
  stolen = g_unix_fd_list_steal_fds (list, &n);
  g_assert_cmpint (n, ==, 1);
  g_assert_cmpint (write (stolen[h], "worker", 6), ==, 6);
  close (stolen[h]);
  g_free (stolen);
  g_atomic_int_set (&writer->done, 1);
  g_main_context_wakeup (NULL);
}

static gboolean
writer_start (gpointer data)
{
  Writer *writer = data;

  g_signal_connect (writer->port, "message", G_CALLBACK (writer_message), writer);
  msg_port_main_start (writer->port);
  return G_SOURCE_REMOVE;
}

static gboolean
writer_stop (gpointer data)
{
  Writer *writer = data;

  msg_port_main_close (writer->port);
  g_clear_object (&writer->port);
  g_atomic_int_set (&writer->done, 2);
  g_main_context_wakeup (NULL);
  return G_SOURCE_REMOVE;
}

static void
test_fds_across_threads (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *port1 = msg_channel_main_get_port1 (ch);
  MsgTestWorker *worker;
  Writer writer = { NULL, NULL, 0 };
  guint baseline = baseline_fds ();
  GUnixFDList *list;
  int pipe_fds[2];
  char buffer[16] = { 0, };

  g_test_summary ("A descriptor crosses from one thread to another in a message and "
                  "works there: the worker writes into the pipe end it got, this "
                  "thread reads the other end");

  worker = msg_test_worker_new ("writer");
  writer.context = msg_test_worker_context (worker);
  writer.port = g_object_ref (msg_channel_main_get_port2 (ch));
  msg_test_worker_invoke (worker, writer_start, &writer);

  make_pipe (pipe_fds);
  list = fd_list_of (&pipe_fds[1], 1);
  close (pipe_fds[1]);
  g_assert_true (msg_port_main_post_with_unix_fd_list (port1, g_variant_new_handle (0),
                                                       NULL, 0, list, NULL));
  g_object_unref (list);

  msg_test_wait_until (NULL, g_atomic_int_get (&writer.done) == 1);
  /* The only write end left was the worker's, which it closed. */
  g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 6);
  g_assert_cmpstr (buffer, ==, "worker");
  g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 0);
  close (pipe_fds[0]);

  msg_test_worker_invoke (worker, writer_stop, &writer);
  msg_test_wait_until (NULL, g_atomic_int_get (&writer.done) == 2);
  msg_test_worker_free (worker);
  g_object_unref (ch);
  msg_test_wait_for_fd_count (baseline);
}

/* Another process ------------------------------------------------------------- */

/* A file of its own, unlinked, with @text in it, open for reading and
 * writing at offset 0. */
static int
temp_file_with (const char *text)
{
  GError *error = NULL;
  char *path = NULL;
  int fd = g_file_open_tmp ("msg-fds-XXXXXX", &path, &error);

  g_assert_no_error (error);
  g_assert_cmpint (unlink (path), ==, 0);
  g_free (path);
  g_assert_cmpint (write (fd, text, strlen (text)), ==, (gssize) strlen (text));
  g_assert_cmpint (lseek (fd, 0, SEEK_SET), ==, 0);
  return fd;
}

static void
test_fds_process_peer (void)
{
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  MsgPortMain *a, *b, *arrived;
  MsgRecorder *rec, *rec_other;
  GUnixFDList *list, *empty, *got;
  guint before = baseline_fds ();
  guint baseline;
  int pipe_fds[2];
  int file_fd;
  char buffer[16] = { 0, };
  gint32 h_pipe, h_file;
  GError *error = NULL;

  g_test_summary ("Descriptors cross to a port whose peer is a socket (the process "
                  "transport) beside a port in one message: the receiver gets its own, "
                  "in order, and they work; an empty list is no list; every descriptor "
                  "is closed in the end");

  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  rec_other = msg_recorder_new (msg_channel_main_get_port1 (other));
  msg_port_main_start (b);
  msg_port_main_start (msg_channel_main_get_port1 (other));
  /* The descriptors of the library's I/O thread exist by now. */
  msg_port_main_post (a, g_variant_new_string ("warm-up"), NULL);
  msg_test_wait_until (NULL, rec->events->len == 1);
  baseline = baseline_fds ();

  make_pipe (pipe_fds);
  file_fd = temp_file_with ("file contents");
  {
    int fds[2] = { pipe_fds[1], file_fd };

    list = fd_list_of (fds, 2);
  }
  close (pipe_fds[1]);
  close (file_fd);
  g_assert_true (msg_port_main_post_with_unix_fd_list (a, g_variant_new ("(hh)", 0, 1),
                                                       &moving, 1, list, &error));
  g_assert_no_error (error);
  g_assert_true (msg_port_main_is_neutered (moving));
  g_object_unref (list);

  msg_test_wait_until (NULL, rec->events->len == 2);
  g_variant_get (msg_recorder_data (rec, 1), "(hh)", &h_pipe, &h_file);
  got = event_fd_list (rec, 1);
  g_assert_nonnull (got);
  g_assert_cmpint (g_unix_fd_list_get_length (got), ==, 2);
  {
    const int *fds = g_unix_fd_list_peek_fds (got, NULL);

    g_assert_cmpint (write (fds[h_pipe], "pipe", 4), ==, 4);
    g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 4);
    g_assert_cmpint (memcmp (buffer, "pipe", 4), ==, 0);
    g_assert_cmpint (pread (fds[h_file], buffer, sizeof buffer, 0), ==, 13);
    g_assert_cmpint (memcmp (buffer, "file contents", 13), ==, 0);
  }
  arrived = msg_message_event_get_port (g_ptr_array_index (rec->events, 1), 0);
  g_assert_true (msg_port_main_post (arrived, g_variant_new_string ("through"), NULL));
  msg_test_wait_until (NULL, rec_other->events->len == 1);
  g_assert_cmpstr (g_variant_get_string (msg_recorder_data (rec_other, 0), NULL), ==, "through");

  empty = g_unix_fd_list_new ();
  g_assert_true (msg_port_main_post_with_unix_fd_list (a, g_variant_new_handle (-1),
                                                       NULL, 0, empty, &error));
  g_assert_no_error (error);
  g_object_unref (empty);
  msg_test_wait_until (NULL, rec->events->len == 3);
  g_assert_cmpint (g_variant_get_handle (msg_recorder_data (rec, 2)), ==, -1);
  g_assert_null (event_fd_list (rec, 2));

  /* Dropping the event closes what it received: the pipe's only write
   * end, so it reads end-of-file. */
  msg_port_main_close (arrived);
  msg_test_wait_until (NULL, rec_other->n_close == 1);
  g_ptr_array_set_size (rec->events, 1);
  g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 0);
  close (pipe_fds[0]);
  msg_test_wait_for_fd_count (baseline);

  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  msg_recorder_free (rec_other);
  g_object_unref (a);
  g_object_unref (b);
  g_object_unref (other);
  msg_test_drain (NULL);
  /* The I/O thread closes the sockets, and the default context's
   * dispatcher goes once it gave back its leases: before the next test
   * counts. The I/O thread's own descriptor stays, if it was made here. */
  msg_test_wait_for_fds_at_most (before + 1);
}

/* A peer whose hello does not announce descriptors (an older
 * msgport-glib): @known, it came before the post, which fails with
 * DATA_CLONE and changes nothing; else the post waits for it, and then
 * its channel ends with DATA_CLONE, the descriptors closed. */
static void
test_fds_process_peer_without_feature (gconstpointer data)
{
  gboolean known = GPOINTER_TO_INT (data);
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  MsgPortMain *port;
  MsgRecorder *rec, *rec_other;
  GUnixFDList *list;
  guint before = baseline_fds ();
  int pipe_fds[2];
  int raw;
  char byte;
  GError *error = NULL;

  g_test_summary ("Descriptors are not sent to a peer process whose hello does not "
                  "announce them: known at post, the post fails with DATA_CLONE; not "
                  "known yet, the message waits for the hello, then its channel ends "
                  "with DATA_CLONE and its descriptors and port are closed");

  msg_test_socket_port_for_port (&raw, &port);
  rec = msg_recorder_new (port);
  rec_other = msg_recorder_new (msg_channel_main_get_port1 (other));
  msg_port_main_start (port);
  msg_port_main_start (msg_channel_main_get_port1 (other));
  if (known)
    {
      /* Acknowledgements and keep-alive, no descriptors; a plain message
       * after it shows it was read. */
      msg_test_send_hello_features (raw, 3);
      msg_test_send_raw (raw, (const guint8[32]) { 'M', 'S', 'G', '2', 1, }, 32, NULL, 0);
      msg_test_wait_until (NULL, rec->events->len == 1);
    }

  make_pipe (pipe_fds);
  list = fd_list_of (&pipe_fds[1], 1);
  close (pipe_fds[1]);
  if (known)
    {
      g_assert_false (msg_port_main_post_with_unix_fd_list (port, g_variant_new_handle (0),
                                                            &moving, 1, list, &error));
      g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_DATA_CLONE);
      g_clear_error (&error);
      g_assert_false (msg_port_main_is_neutered (moving));
      g_assert_false (msg_port_main_is_closed (port));
      g_object_unref (list);
    }
  else
    {
      g_assert_true (msg_port_main_post_with_unix_fd_list (port, g_variant_new_handle (0),
                                                           &moving, 1, list, &error));
      g_assert_no_error (error);
      g_object_unref (list);
      msg_test_send_hello_features (raw, 3);
      msg_test_wait_until (NULL, rec->n_close == 1);
      msg_test_assert_close_reason (port, MSG_PORT_ERROR_DATA_CLONE);
      /* The port went with the message. */
      msg_test_wait_until (NULL, rec_other->n_close == 1);
    }
  /* The only write end was the duplicate of the list, closed either way. */
  g_assert_cmpint (read (pipe_fds[0], &byte, 1), ==, 0);
  close (pipe_fds[0]);

  msg_port_main_close (port);
  msg_port_main_close (msg_channel_main_get_port1 (other));
  msg_test_wait_until (NULL, rec->n_close == 1 && rec_other->n_close == 1);
  close (raw);
  msg_recorder_free (rec);
  msg_recorder_free (rec_other);
  g_object_unref (port);
  g_object_unref (other);
  msg_test_drain (NULL);
  msg_test_wait_for_fds_at_most (before + 1);
}

static void
test_fds_process_peer_too_many (void)
{
  MsgChannelMain *other = msg_channel_main_new ();
  MsgPortMain *moving = msg_channel_main_get_port2 (other);
  MsgPortMain *a, *b;
  GUnixFDList *list;
  guint before = baseline_fds ();
  struct rlimit old_limit, limit;
  GError *error = NULL;
  int null_fd;

  g_test_summary ("A list and ports that need more than a frame's descriptors (4096, "
                  "less one for a memfd) fail at post with TOO_LARGE when the peer is in "
                  "another process: nothing sent, nothing neutered, nothing duplicated");

  g_assert_cmpint (getrlimit (RLIMIT_NOFILE, &old_limit), ==, 0);
  if (old_limit.rlim_max < 4096 + 64)
    {
      g_test_skip ("needs a hard RLIMIT_NOFILE above 4160");
      g_object_unref (other);
      return;
    }
  limit = old_limit;
  limit.rlim_cur = 4096 + 64;
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &limit), ==, 0);

  msg_test_socket_ports (&a, &b);
  null_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  g_assert_cmpint (null_fd, >=, 0);
  list = g_unix_fd_list_new ();
  for (guint i = 0; i < 4095; i++)
    g_assert_cmpint (g_unix_fd_list_append (list, null_fd, NULL), ==, (int) i);
  close (null_fd);

  g_assert_false (msg_port_main_post_with_unix_fd_list (a, g_variant_new_handle (0),
                                                        &moving, 1, list, &error));
  g_assert_error (error, MSG_PORT_ERROR, MSG_PORT_ERROR_TOO_LARGE);
  g_clear_error (&error);
  g_assert_false (msg_port_main_is_neutered (moving));
  g_object_unref (list);

  msg_port_main_close (a);
  g_object_unref (a);
  g_object_unref (b);
  g_object_unref (other);
  msg_test_drain (NULL);
  msg_test_wait_for_fds_at_most (before + 1);
  g_assert_cmpint (setrlimit (RLIMIT_NOFILE, &old_limit), ==, 0);
}

/* Reads from @raw, a socket whose other end is a port, into @decoder
 * until it gives a frame. A read that takes longer than the test's
 * timeout fails. */
static MsgWireFrame *
raw_next_frame (int             raw,
                MsgWireDecoder *decoder)
{
  struct timeval timeout = { MSG_TEST_TIMEOUT_SECONDS, 0 };
  MsgWireFrame *frame = NULL;
  GError *error = NULL;

  g_assert_cmpint (setsockopt (raw, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), ==, 0);
  while (!msg_wire_decoder_next (decoder, &frame, &error))
    {
      union {
        struct cmsghdr header;
        char           buffer[CMSG_SPACE (sizeof (int) * MSG_WIRE_MAX_FDS_PER_SEND)];
      } control;
      struct msghdr message = { 0, };
      struct cmsghdr *cmsg;
      struct iovec iov;
      int fds[MSG_WIRE_MAX_FDS_PER_SEND];
      guint n_fds = 0;
      gsize size;
      ssize_t n;

      g_assert_no_error (error);
      iov.iov_base = msg_wire_decoder_reserve (decoder, 4096, &size);
      iov.iov_len = size;
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control.buffer;
      message.msg_controllen = sizeof control.buffer;
      n = recvmsg (raw, &message, MSG_CMSG_CLOEXEC);
      g_assert_cmpint (n, >, 0);
      for (cmsg = CMSG_FIRSTHDR (&message); cmsg != NULL; cmsg = CMSG_NXTHDR (&message, cmsg))
        {
          guint count = (cmsg->cmsg_len - CMSG_LEN (0)) / sizeof (int);

          g_assert_cmpint (cmsg->cmsg_type, ==, SCM_RIGHTS);
          memcpy (fds + n_fds, CMSG_DATA (cmsg), count * sizeof (int));
          n_fds += count;
        }
      msg_wire_decoder_commit (decoder, n, fds, n_fds);
    }
  return frame;
}

static void
test_fds_process_peer_hello_later (void)
{
  MsgPortMain *port;
  MsgWireDecoder *decoder = msg_wire_decoder_new ();
  MsgWireFrame *frame;
  GUnixFDList *list;
  guint before = baseline_fds ();
  int pipe_fds[2];
  int raw;
  char buffer[8];

  g_test_summary ("A message with descriptors posted before the peer process said hello "
                  "waits for it, with what was posted after it: once the hello announces "
                  "descriptors, both go out in order, the descriptors with their frame");

  msg_test_socket_port_for_port (&raw, &port);
  make_pipe (pipe_fds);
  list = fd_list_of (&pipe_fds[1], 1);
  close (pipe_fds[1]);
  g_assert_true (msg_port_main_post_with_unix_fd_list (port, g_variant_new_handle (0),
                                                       NULL, 0, list, NULL));
  g_object_unref (list);
  g_assert_true (msg_port_main_post (port, g_variant_new_string ("after"), NULL));

  /* The port's hello comes first, whatever this end said. */
  frame = raw_next_frame (raw, decoder);
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_HELLO);
  g_assert_cmpuint (frame->args[0] & MSG_WIRE_FEATURE_FDS, !=, 0);
  msg_wire_frame_free (frame);

  /* Acknowledgements, keep-alive, descriptors. */
  msg_test_send_hello_features (raw, 7);
  frame = raw_next_frame (raw, decoder);
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_MESSAGE);
  g_assert_cmpint (g_variant_get_handle (frame->data), ==, 0);
  g_assert_nonnull (frame->message_fds);
  g_assert_cmpuint (frame->message_fds->len, ==, 1);
  g_assert_cmpint (write (g_array_index (frame->message_fds, int, 0), "raw", 3), ==, 3);
  g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 3);
  msg_wire_frame_free (frame);
  frame = raw_next_frame (raw, decoder);
  g_assert_cmpint (frame->kind, ==, MSG_WIRE_FRAME_MESSAGE);
  g_assert_cmpstr (g_variant_get_string (frame->data, NULL), ==, "after");
  msg_wire_frame_free (frame);
  /* Every write end is closed: this process's duplicate went out. */
  g_assert_cmpint (read (pipe_fds[0], buffer, sizeof buffer), ==, 0);
  close (pipe_fds[0]);

  msg_wire_decoder_free (decoder);
  close (raw);
  msg_port_main_close (port);
  g_object_unref (port);
  msg_test_drain (NULL);
  msg_test_wait_for_fds_at_most (before + 1);
}

static void
test_fds_moved_to_process (void)
{
  MsgChannelMain *ch = msg_channel_main_new ();
  MsgPortMain *sender = msg_channel_main_get_port1 (ch);
  MsgPortMain *moving = msg_channel_main_get_port2 (ch);
  MsgPortMain *a, *b, *arrived;
  MsgRecorder *rec, *rec_arrived;
  guint before = baseline_fds ();
  int pipe_fds[2];
  char bytes[5];

  g_test_summary ("A port with descriptor messages queued on it that moves to another "
                  "process (here: over a socket pair) takes them along: the messages "
                  "arrive with their descriptors, which work, and none leaks");

  msg_test_socket_ports (&a, &b);
  rec = msg_recorder_new (b);
  msg_port_main_start (b);

  make_pipe (pipe_fds);
  post_fd_messages (sender, pipe_fds[1], 5);
  close (pipe_fds[1]);
  g_assert_true (msg_port_main_post_message (a, NULL, &moving, 1, NULL));
  msg_test_wait_until (NULL, rec->events->len == 1);
  arrived = msg_message_event_get_port (g_ptr_array_index (rec->events, 0), 0);
  rec_arrived = msg_recorder_new (arrived);
  msg_port_main_start (arrived);
  msg_test_wait_until (NULL, rec_arrived->events->len == 5);
  for (guint i = 0; i < 5; i++)
    {
      GUnixFDList *list = event_fd_list (rec_arrived, i);
      guint32 seq;
      gint32 h;

      g_variant_get (msg_recorder_data (rec_arrived, i), "(uh)", &seq, &h);
      g_assert_cmpuint (seq, ==, i);
      g_assert_nonnull (list);
      g_assert_cmpint (g_unix_fd_list_get_length (list), ==, 1);
      g_assert_cmpint (write (g_unix_fd_list_peek_fds (list, NULL)[h], &"abcde"[i], 1), ==, 1);
    }
  g_assert_cmpint (read (pipe_fds[0], bytes, sizeof bytes), ==, 5);
  g_assert_cmpint (memcmp (bytes, "abcde", 5), ==, 0);

  /* Once the events are gone, no write end is left open anywhere: the
   * pipe reads end-of-file at once. */
  g_ptr_array_set_size (rec_arrived->events, 0);
  g_assert_cmpint (fcntl (pipe_fds[0], F_SETFL, O_NONBLOCK), ==, 0);
  g_assert_cmpint (read (pipe_fds[0], bytes, 1), ==, 0);
  close (pipe_fds[0]);

  msg_port_main_close (sender);
  msg_test_wait_until (NULL, rec_arrived->n_close == 1);
  msg_recorder_free (rec_arrived);
  msg_port_main_close (a);
  msg_test_wait_until (NULL, rec->n_close == 1);
  msg_recorder_free (rec);
  g_object_unref (a);
  g_object_unref (b);
  g_object_unref (ch);
  msg_test_drain (NULL);
  msg_test_wait_for_fds_at_most (before + 1);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/fds/same-thread", test_fds_same_thread);
  g_test_add_func ("/fds/without-list", test_fds_without_list);
  for (gsize i = 0; i < G_N_ELEMENTS (bad_handles); i++)
    g_test_add_data_func (bad_handles[i].path, &bad_handles[i], test_fds_refused);
  g_test_add_data_func ("/fds/dropped-queue/closed", GINT_TO_POINTER (FALSE),
                        test_fds_dropped_queue);
  g_test_add_data_func ("/fds/dropped-queue/dropped", GINT_TO_POINTER (TRUE),
                        test_fds_dropped_queue);
  g_test_add_func ("/fds/dropped-events", test_fds_dropped_events);
  g_test_add_data_func ("/fds/moved-port/same-thread", GINT_TO_POINTER (FALSE),
                        test_fds_moved_port);
  g_test_add_data_func ("/fds/moved-port/to-thread", GINT_TO_POINTER (TRUE),
                        test_fds_moved_port);
  g_test_add_func ("/fds/moved-port/never-adopted", test_fds_moved_never_adopted);
  g_test_add_func ("/fds/across-threads", test_fds_across_threads);
  g_test_add_func ("/fds/out-of-descriptors", test_fds_out_of_descriptors);
  g_test_add_func ("/fds/process-peer", test_fds_process_peer);
  g_test_add_data_func ("/fds/process-peer/without-feature/known", GINT_TO_POINTER (TRUE),
                        test_fds_process_peer_without_feature);
  g_test_add_data_func ("/fds/process-peer/without-feature/later", GINT_TO_POINTER (FALSE),
                        test_fds_process_peer_without_feature);
  g_test_add_func ("/fds/process-peer/too-many", test_fds_process_peer_too_many);
  g_test_add_func ("/fds/process-peer/hello-later", test_fds_process_peer_hello_later);
  g_test_add_func ("/fds/moved-port/to-process", test_fds_moved_to_process);

  return g_test_run ();
}
