/* msg-test-utils.c: helpers shared by the C tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <dirent.h>
#include <string.h>
#include <sys/socket.h>

#include "msg-test-utils.h"

guint
msg_test_count_fds (void)
{
  DIR *dir = opendir ("/proc/self/fd");
  struct dirent *entry;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((entry = readdir (dir)) != NULL)
    n += entry->d_name[0] != '.';
  closedir (dir);
  return n - 1;  /* the directory itself */
}

gboolean
msg_test_wake (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

void
msg_test_count_message (MsgPortMain     *port,
                        MsgMessageEvent *event,
                        gpointer         user_data)
{
  (*(guint *) user_data)++;
}

void
msg_test_count_signal (MsgPortMain *port,
                       gpointer     user_data)
{
  (*(guint *) user_data)++;
}

/* What each open descriptor is, for the message of a failed wait. */
static char *
describe_fds (void)
{
  GString *text = g_string_new (NULL);
  DIR *dir = opendir ("/proc/self/fd");
  struct dirent *entry;

  while (dir != NULL && (entry = readdir (dir)) != NULL)
    {
      g_autofree char *path = g_strconcat ("/proc/self/fd/", entry->d_name, NULL);
      g_autofree char *target = g_file_read_link (path, NULL);

      if (entry->d_name[0] != '.')
        g_string_append_printf (text, " %s=%s", entry->d_name, target ? target : "?");
    }
  if (dir != NULL)
    closedir (dir);
  return g_string_free (text, FALSE);
}

static void
wait_for_fds (guint    expected,
              gboolean at_most)
{
  guint id = g_timeout_add (5, msg_test_wake, NULL);
  gboolean timed_out = FALSE;
  GSource *timeout = msg_test_timeout_source_new (NULL, &timed_out);
  guint n;

  while ((n = msg_test_count_fds ()) != expected && !(at_most && n < expected) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  g_source_destroy (timeout);
  g_source_unref (timeout);
  g_source_remove (id);
  if (timed_out)
    {
      g_autofree char *fds = describe_fds ();

      g_error ("timed out waiting for %s%u open descriptors; open:%s",
               at_most ? "at most " : "", expected, fds);
    }
}

void
msg_test_wait_for_fd_count (guint expected)
{
  wait_for_fds (expected, FALSE);
}

void
msg_test_wait_for_fds_at_most (guint max)
{
  wait_for_fds (max, TRUE);
}

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

GSource *
msg_test_timeout_source_new (GMainContext *context,
                             gboolean     *timed_out)
{
  GSource *source = g_timeout_source_new_seconds (MSG_TEST_TIMEOUT_SECONDS);

  g_source_set_callback (source, timeout_cb, timed_out, NULL);
  g_source_attach (source, context);

  return source;
}

void
msg_test_drain (GMainContext *context)
{
  while (g_main_context_iteration (context, FALSE))
    ;
}

void
msg_test_iterate_for (GMainContext *context,
                      guint         ms)
{
  gboolean done = FALSE;
  GSource *source = g_timeout_source_new (ms);

  g_source_set_callback (source, timeout_cb, &done, NULL);
  g_source_attach (source, context);
  while (!done)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (source);
  g_source_unref (source);
}

static void
on_message (MsgPortMain     *port,
            MsgMessageEvent *event,
            gpointer         user_data)
{
  MsgRecorder *self = user_data;

  g_assert_true (port == self->port);
  g_ptr_array_add (self->events, g_object_ref (event));
  self->thread = g_thread_self ();
}

static void
on_close (MsgPortMain *port,
          gpointer     user_data)
{
  MsgRecorder *self = user_data;

  g_assert_true (port == self->port);
  self->n_close++;
  self->n_messages_at_close = self->events->len;
  self->thread = g_thread_self ();
}

MsgRecorder *
msg_recorder_new (MsgPortMain *port)
{
  MsgRecorder *self = g_new0 (MsgRecorder, 1);

  self->port = g_object_ref (port);
  self->events = g_ptr_array_new_with_free_func (g_object_unref);
  self->message_id = g_signal_connect (port, "message", G_CALLBACK (on_message), self);
  self->close_id = g_signal_connect (port, "close", G_CALLBACK (on_close), self);

  return self;
}

void
msg_recorder_free (MsgRecorder *self)
{
  g_signal_handler_disconnect (self->port, self->message_id);
  g_signal_handler_disconnect (self->port, self->close_id);
  g_object_unref (self->port);
  g_ptr_array_unref (self->events);
  g_free (self);
}

GVariant *
msg_recorder_data (MsgRecorder *self,
                   guint        i)
{
  g_assert_cmpuint (i, <, self->events->len);
  return msg_message_event_get_data (g_ptr_array_index (self->events, i));
}

void
msg_test_socket_port_for_port (int          *other_end,
                               MsgPortMain **port)
{
  int fds[2];
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
  *port = msg_port_main_new_for_fd (fds[0], &error);
  g_assert_no_error (error);
  *other_end = fds[1];
}

void
msg_test_send_hello (int fd)
{
  /* Acknowledgements, keep-alive. */
  msg_test_send_hello_features (fd, 3);
}

void
msg_test_send_hello_features (int     fd,
                              guint64 features)
{
  /* docs/wire-format.md: "MSG2", kind 3 (hello), 8 bytes of body: the
   * features. */
  guint8 hello[40] = { 'M', 'S', 'G', '2', 3, };

  hello[24] = 8;
  for (guint i = 0; i < 8; i++)
    hello[32 + i] = (guint8) (features >> (8 * i));
  g_assert_cmpint (msg_test_send_raw (fd, hello, sizeof hello, NULL, 0), ==, sizeof hello);
}

void
msg_test_socket_port (int          *raw,
                      MsgPortMain **port)
{
  msg_test_socket_port_for_port (raw, port);
  msg_test_send_hello (*raw);
}

void
msg_test_socket_ports (MsgPortMain **a,
                       MsgPortMain **b)
{
  int raw;
  g_autoptr(GError) error = NULL;

  msg_test_socket_port_for_port (&raw, a);
  *b = msg_port_main_new_for_fd (raw, &error);
  g_assert_no_error (error);
}

struct _MsgTestWorker
{
  GThread      *thread;
  GMainContext *context;
  GMainLoop    *loop;
};

static gpointer
worker_main (gpointer data)
{
  MsgTestWorker *self = data;

  g_main_context_push_thread_default (self->context);
  g_main_loop_run (self->loop);
  /* Finish what was sent before the loop was quit. */
  msg_test_drain (self->context);
  g_main_context_pop_thread_default (self->context);

  return NULL;
}

MsgTestWorker *
msg_test_worker_new (const char *name)
{
  MsgTestWorker *self = g_new0 (MsgTestWorker, 1);

  self->context = g_main_context_new ();
  self->loop = g_main_loop_new (self->context, FALSE);
  self->thread = g_thread_new (name, worker_main, self);

  return self;
}

GMainContext *
msg_test_worker_context (MsgTestWorker *self)
{
  return self->context;
}

/* A call handed to a worker. GLib hands the idle source over under its
 * context's GMutex, which ThreadSanitizer cannot see: the release before
 * the source is attached and the acquire when it runs order what this
 * thread did before (@data, the source itself) before what the worker does
 * with them. */
typedef struct
{
  GSourceFunc func;
  gpointer    data;
} WorkerCall;

static gboolean
worker_call_run (gpointer user_data)
{
  WorkerCall *call = user_data;

  MSG_TSAN_ACQUIRE (call);
  return call->func (call->data);
}

void
msg_test_worker_invoke (MsgTestWorker *self,
                        GSourceFunc    func,
                        gpointer       data)
{
  GSource *source = g_idle_source_new ();
  WorkerCall *call = g_new (WorkerCall, 1);

  call->func = func;
  call->data = data;
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, worker_call_run, call, g_free);
  MSG_TSAN_RELEASE (call);
  g_source_attach (source, self->context);
  g_source_unref (source);
}

static gboolean
quit_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

void
msg_test_worker_free (MsgTestWorker *self)
{
  msg_test_worker_invoke (self, quit_cb, self->loop);
  g_thread_join (self->thread);
  g_main_loop_unref (self->loop);
  g_main_context_unref (self->context);
  g_free (self);
}

/* Posters --------------------------------------------------------------------- */

typedef struct
{
  MsgPortMain *port;       /* (owned) */
  guint        index;
  guint        n;
  GThread     *thread;
} Poster;

struct _MsgTestPosters
{
  guint   n_threads;
  Poster *posters;
};

static gpointer
poster_thread (gpointer data)
{
  Poster *poster = data;

  for (guint i = 0; i < poster->n; i++)
    g_assert_true (msg_port_main_post (poster->port,
                                       g_variant_new ("(ut)", poster->index, (guint64) i),
                                       NULL));
  return NULL;
}

MsgTestPosters *
msg_test_posters_new (MsgPortMain *port,
                      guint        n_threads,
                      guint        n)
{
  MsgTestPosters *self = g_new0 (MsgTestPosters, 1);

  self->n_threads = n_threads;
  self->posters = g_new0 (Poster, n_threads);
  for (guint t = 0; t < n_threads; t++)
    {
      self->posters[t].port = g_object_ref (port);
      self->posters[t].index = t;
      self->posters[t].n = n;
      self->posters[t].thread = g_thread_new ("poster", poster_thread, &self->posters[t]);
    }
  return self;
}

void
msg_test_posters_join (MsgTestPosters *self)
{
  for (guint t = 0; t < self->n_threads; t++)
    {
      g_thread_join (self->posters[t].thread);
      g_object_unref (self->posters[t].port);
    }
  g_free (self->posters);
  g_free (self);
}

typedef struct
{
  MsgPortMain *port;       /* (owned) */
  guint64      n;
} Counter;

static gpointer
counter_thread (gpointer data)
{
  Counter *counter = data;

  for (guint64 i = 0; i < counter->n; i++)
    msg_port_main_post (counter->port, g_variant_new_uint64 (i), NULL);
  g_object_unref (counter->port);
  g_free (counter);
  return NULL;
}

GThread *
msg_test_count_in_thread (MsgPortMain *port,
                          guint64      n)
{
  Counter *counter = g_new0 (Counter, 1);

  counter->port = g_object_ref (port);
  counter->n = n;
  return g_thread_new ("counter", counter_thread, counter);
}

/* Sanitizers ------------------------------------------------------------------ */

#if defined (__SANITIZE_THREAD__) || defined (__SANITIZE_ADDRESS__)
# define MSG_TEST_SANITIZER 1
#elif defined (__has_feature)
# if __has_feature (thread_sanitizer) || __has_feature (address_sanitizer)
#  define MSG_TEST_SANITIZER 1
# endif
#endif

#ifdef MSG_TEST_SANITIZER
/* <sanitizer/common_interface_defs.h>, which gcc and clang both provide */
void __sanitizer_symbolize_pc (void       *pc,
                               const char *fmt,
                               char       *out_buf,
                               size_t      out_buf_size);
#endif

void
msg_test_start_symbolizer (void)
{
#ifdef MSG_TEST_SANITIZER
  char frame[256];

  __sanitizer_symbolize_pc (__builtin_return_address (0), "%p %F %L", frame, sizeof frame);
#endif
}

/* GLib's worker and the contexts' lists -------------------------------------- */

/* A source that never dispatches. */
static GSourceFuncs keep_source_list_funcs = { NULL, };

GSource *
msg_test_keep_source_list (GMainContext *context)
{
  GSource *source = g_source_new (&keep_source_list_funcs, sizeof (GSource));

  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_attach (source, context);
  return source;
}

/* One sendmsg() of @size bytes of @data on @fd, with @n_fds (at most 8)
 * descriptors attached: what a peer process writes. */
gssize
msg_test_send_raw (int         fd,
                   const void *data,
                   gsize       size,
                   const int  *fds,
                   guint       n_fds)
{
  struct iovec iov = { (void *) data, size };
  struct msghdr message = { 0, };
  union {
    struct cmsghdr header;
    char           buffer[CMSG_SPACE (sizeof (int) * 8)];
  } control;

  g_assert_cmpuint (n_fds, <=, 8);
  memset (&control, 0, sizeof control);
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  if (n_fds > 0)
    {
      struct cmsghdr *cmsg;

      message.msg_control = control.buffer;
      message.msg_controllen = CMSG_SPACE (sizeof (int) * n_fds);
      cmsg = CMSG_FIRSTHDR (&message);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN (sizeof (int) * n_fds);
      memcpy (CMSG_DATA (cmsg), fds, sizeof (int) * n_fds);
    }
  return sendmsg (fd, &message, MSG_NOSIGNAL);
}

/* A tuple of @n bytes: its type string is @n + 2 characters long. */
GVariant *
msg_test_tuple_of_bytes (guint n)
{
  g_autofree GVariant **children = g_new (GVariant *, n);

  for (guint i = 0; i < n; i++)
    children[i] = g_variant_new_byte (i);
  return g_variant_new_tuple (children, n);
}

/* Children ----------------------------------------------------------------- */

void
msg_test_child_spawn_argv (MsgTestChild       *child,
                           const char * const *argv)
{
  GSubprocessLauncher *launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  GError *error = NULL;

  child->port = msg_port_main_new_for_launcher (launcher, -1, &error);
  g_assert_no_error (error);
  child->process = g_subprocess_launcher_spawnv (launcher, argv, &error);
  g_assert_no_error (error);
  /* Dropping the launcher closes our copy of the child's end. */
  g_object_unref (launcher);
}

void
msg_test_child_spawn (MsgTestChild *child,
                      const char   *program,
                      const char   *mode,
                      guint64       arg)
{
  char *path = g_test_build_filename (G_TEST_BUILT, program, NULL);
  char *arg_s = g_strdup_printf ("%" G_GUINT64_FORMAT, arg);
  const char *argv[] = { path, mode, arg_s, NULL };

  msg_test_child_spawn_argv (child, argv);
  g_free (arg_s);
  g_free (path);
}

static void
child_exited (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  MsgTestChild *child = user_data;
  GError *error = NULL;

  child->ok = g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error);
  if (error != NULL)
    g_test_message ("child: %s", error->message);
  g_clear_error (&error);
  child->exited = TRUE;
}

/* A child built with a sanitizer exits with the code its options set
 * (tools/check-tsan: 66) when it finds an error, after printing its
 * report to the test's log; that fails here, never passes for the
 * expected death. */
void
msg_test_child_wait (MsgTestChild *child,
                     int           term_sig)
{
  g_subprocess_wait_check_async (child->process, NULL, child_exited, child);
  msg_test_wait_until (NULL, child->exited);
  if (term_sig != 0)
    {
      g_assert_true (g_subprocess_get_if_signaled (child->process));
      g_assert_cmpint (g_subprocess_get_term_sig (child->process), ==, term_sig);
    }
  else
    {
      g_assert_true (g_subprocess_get_if_exited (child->process));
      if (g_subprocess_get_exit_status (child->process) == 66)
        g_test_message ("exit status 66: the child's sanitizer found an error, reported above");
      g_assert_cmpint (g_subprocess_get_exit_status (child->process), ==, 0);
      g_assert_true (child->ok);
    }
  g_clear_object (&child->process);
  g_clear_object (&child->port);
}
