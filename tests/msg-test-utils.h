/* msg-test-utils.h: helpers shared by the C tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <msgport-glib.h>

/* The tests lock the way the library does, so that ThreadSanitizer sees
 * their GMutex and GCond too: msg_mutex_lock(), msg_cond_wait(). */
#include "msg-lock-private.h"

G_BEGIN_DECLS

/* How long any wait in a test may take before the test fails. */
#define MSG_TEST_TIMEOUT_SECONDS 60

/* Iterates @context (blocking) until @cond holds; fails the test if that
 * takes longer than MSG_TEST_TIMEOUT_SECONDS. Never sleeps. */
#define msg_test_wait_until(context, cond)                                  \
  G_STMT_START {                                                            \
    gboolean _timed_out = FALSE;                                            \
    GSource *_timeout = msg_test_timeout_source_new ((context), &_timed_out); \
    while (!(cond) && !_timed_out)                                          \
      g_main_context_iteration ((context), TRUE);                           \
    g_source_destroy (_timeout);                                            \
    g_source_unref (_timeout);                                              \
    if (_timed_out)                                                         \
      g_error ("%s:%d: timed out waiting for %s", __FILE__, __LINE__, #cond); \
  } G_STMT_END

/* A GSourceFunc that does nothing but stay: a source that wakes a main
 * context to look at a condition. */
gboolean msg_test_wake (gpointer data);

/* Signal handlers that add one to the guint at @user_data: for ::message,
 * and for signals with no argument (::close, ::drain). */
void msg_test_count_message (MsgPortMain     *port,
                             MsgMessageEvent *event,
                             gpointer         user_data);
void msg_test_count_signal  (MsgPortMain     *port,
                             gpointer         user_data);

/* msg_test_wait_until() on the default context, for a condition that
 * another thread (the I/O thread, say) changes without waking it: a
 * source wakes it every 5 ms to look. */
#define msg_test_wait_polling(cond)                                      \
  G_STMT_START {                                                         \
    guint _msg_wake_id = g_timeout_add (5, msg_test_wake, NULL);         \
    msg_test_wait_until (NULL, cond);                                    \
    g_source_remove (_msg_wake_id);                                      \
  } G_STMT_END

GSource *msg_test_timeout_source_new (GMainContext *context,
                                      gboolean     *timed_out);

/* Dispatches everything that is ready on @context without blocking, until
 * nothing is: used to show that something does NOT happen. */
void     msg_test_drain              (GMainContext *context);

/* How many descriptors this process has open. */
guint    msg_test_count_fds          (void);
/* Iterates the default context until msg_test_count_fds() is @expected:
 * the library's I/O thread closes descriptors without waking the context,
 * so a timeout source wakes it every few milliseconds to look again. */
void     msg_test_wait_for_fd_count  (guint         expected);
/* The same, until at most @max are open (descriptors that GLib makes once,
 * such as a child watch's, may have gone meanwhile). */
void     msg_test_wait_for_fds_at_most (guint       max);
/* Asserts that @port closed with @code in the MSG_PORT_ERROR domain. */
#define msg_test_assert_close_reason(port, code) G_STMT_START {          \
  g_autoptr(GError) msg_test_reason_ = msg_port_main_get_close_reason (port); \
  g_assert_error (msg_test_reason_, MSG_PORT_ERROR, (code));                 \
} G_STMT_END
/* Iterates @context (blocking) for @ms milliseconds: used to show that
 * something that would come from another thread or process does NOT
 * happen within that time. */
void     msg_test_iterate_for        (GMainContext *context,
                                      guint         ms);

/* Records what a port emits. */
typedef struct
{
  MsgPortMain *port;        /* (owned) */
  GPtrArray   *events;      /* (element-type MsgMessageEvent) */
  guint        n_close;
  guint        n_messages_at_close;
  GThread     *thread;      /* the thread of the last emission */
  gulong       message_id;
  gulong       close_id;
} MsgRecorder;

MsgRecorder *msg_recorder_new        (MsgPortMain *port);
void         msg_recorder_free       (MsgRecorder *self);
GVariant    *msg_recorder_data       (MsgRecorder *self,
                                      guint        i);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MsgRecorder, msg_recorder_free)

/* Sends a wire-format hello on @fd, as each end of a socket must first. */
void         msg_test_send_hello     (int           fd);
/* The same, announcing @features (MSG_WIRE_FEATURE_*); the one above
 * announces acknowledgements and keep-alive, not descriptors. */
void         msg_test_send_hello_features (int         fd,
                                           guint64     features);
/* A connected socket pair made into two ports (@a, @b), or one port and
 * the raw other end (@raw, which said hello already), for tests of the
 * process transport. */
void         msg_test_socket_ports   (MsgPortMain **a,
                                      MsgPortMain **b);
void         msg_test_socket_port    (int          *raw,
                                      MsgPortMain **port);
/* The same, but the other end says nothing yet: it is to become a port
 * (msg_port_main_new_for_fd()), which says hello itself. */
void         msg_test_socket_port_for_port (int          *other_end,
                                            MsgPortMain **port);
GVariant    *msg_test_tuple_of_bytes (guint         n);
gssize       msg_test_send_raw       (int           fd,
                                      const void   *data,
                                      gsize         size,
                                      const int    *fds,
                                      guint         n_fds);

/* A thread running its own thread-default GMainContext, to which work is
 * sent with msg_test_worker_invoke(). */
typedef struct _MsgTestWorker MsgTestWorker;

MsgTestWorker *msg_test_worker_new    (const char    *name);
GMainContext  *msg_test_worker_context (MsgTestWorker *self);
void           msg_test_worker_invoke (MsgTestWorker *self,
                                       GSourceFunc    func,
                                       gpointer       data);
void           msg_test_worker_free   (MsgTestWorker *self);

/* Threads that each post @n messages "(ut)" (the thread's index, a
 * sequence number from 0) on one port at once. */
typedef struct _MsgTestPosters MsgTestPosters;

MsgTestPosters *msg_test_posters_new  (MsgPortMain    *port,
                                       guint           n_threads,
                                       guint           n);
/* Joins the threads and frees @self. */
void            msg_test_posters_join (MsgTestPosters *self);

/* A thread that posts the numbers 0 to @n - 1 ("t") on @port; join it. */
GThread        *msg_test_count_in_thread (MsgPortMain *port,
                                          guint64      n);

/* Under ASan or TSan: starts the sanitizer's symbolizer now. It is a
 * process that the sanitizer talks to through two pipes, started the
 * first time it symbolizes a stack (for a report, or to match one against
 * its suppressions) and kept open: a test that counts its descriptors
 * calls this before it takes its baseline. Does nothing otherwise. */
void            msg_test_start_symbolizer (void);

/* A source attached to @context at G_PRIORITY_DEFAULT that never
 * dispatches; destroy and unref it at the end. GLib's worker thread
 * ("gmain"), which reaps the children of GSubprocess, returns each wait's
 * GTask through a source it attaches to the waiting context and then
 * unrefs, maybe after the waiting thread has run it: then the worker
 * removes the last source of the default priority and frees the context's
 * list for it, which the waiting thread made, ordered by the context's
 * lock only. ThreadSanitizer cannot see that lock, nor name the static
 * GLib function that frees the list, so no suppression can name it
 * (docs/testing.md). A source that stays keeps that list alive; the
 * waiting thread frees it at the end. */
GSource        *msg_test_keep_source_list (GMainContext *context);

/* A child process spawned with a parent port (tests/process-child.c and
 * the like, built beside the tests). */
typedef struct
{
  GSubprocess *process;
  MsgPortMain *port;   /* not started */
  gboolean     exited;
  gboolean     ok;
} MsgTestChild;

void         msg_test_child_spawn_argv (MsgTestChild       *child,
                                        const char * const *argv);
void         msg_test_child_spawn      (MsgTestChild       *child,
                                        const char         *program,
                                        const char         *mode,
                                        guint64             arg);
/* Waits for @child to end: with a clean exit, or killed by @term_sig if
 * that is not 0; then clears it. */
void         msg_test_child_wait       (MsgTestChild       *child,
                                        int                 term_sig);

G_END_DECLS
