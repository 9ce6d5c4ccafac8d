/* msg-dispatcher-private.h: one GSource per GMainContext for its ports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The dispatcher of a context delivers the items of the endpoints started
 * there (see msg-dispatcher.c). It knows endpoints and nothing above them:
 * the port binds an endpoint to it, and the process transport lends it
 * sockets to read.
 */

#pragma once

#include "msg-endpoint-private.h"

G_BEGIN_DECLS

typedef struct _MsgDispatcher MsgDispatcher;

/* At most this many items of one endpoint are delivered per dispatch: a
 * port with a backlog delivers it over several dispatches, so that the
 * other ports of its context and the context's other sources run in
 * between (a higher-priority source before the next batch). */
#define MSG_DISPATCH_BATCH_MAX 256

MsgDispatcher *msg_dispatcher_acquire    (GMainContext  *context);
/* The dispatcher of @context whose source has @priority: ports with a
 * #MsgPortMain:priority other than the default have one of their own per
 * context and priority. */
MsgDispatcher *msg_dispatcher_acquire_full (GMainContext *context,
                                            gint          priority);
void           msg_dispatcher_release    (MsgDispatcher *self);
MsgDispatcher *msg_dispatcher_ref        (MsgDispatcher *self);
void           msg_dispatcher_unref      (MsgDispatcher *self);

/* Called with @endpoint->lock held, by start(): @self delivers the items
 * of @endpoint from now on, each passed to @emit with endpoint->port.
 * Takes the reference of msg_dispatcher_acquire(). */
void           msg_dispatcher_bind_locked   (MsgDispatcher *self,
                                             MsgEndpoint   *endpoint,
                                             MsgEmitFunc    emit);
/* Called with @endpoint->lock held: @endpoint is no longer delivered.
 * Returns its dispatcher, whose reference the caller releases once
 * unlocked; %NULL if it was not bound. */
MsgDispatcher *msg_dispatcher_unbind_locked (MsgEndpoint   *endpoint);
/* Called with @endpoint->lock held: the dispatcher @endpoint is bound to
 * (transfer none), or %NULL. */
MsgDispatcher *msg_dispatcher_get_bound_locked (MsgEndpoint *endpoint);

/* Context reads: a socket whose reading the process transport hands to the
 * dispatcher of the context its messages go to, while that context waits
 * in poll(), so that a message costs no wake-up of the I/O thread (see
 * msg-transport-unix.c). The dispatcher knows a lease only through the
 * functions the transport passes with it. */
typedef struct _MsgLease MsgLease;

typedef struct
{
  MsgLease *(*ref)       (MsgLease      *lease);
  void      (*unref)     (MsgLease      *lease);
  /* Reads what @lease's socket holds and delivers it; FALSE once the lease
   * is gone (taken back, or given back because something only the I/O
   * thread handles came), after which @dispatcher stops polling it. */
  gboolean  (*read)      (MsgLease      *lease,
                          MsgDispatcher *dispatcher);
  /* @dispatcher goes away: the I/O thread reads @lease's socket again. */
  void      (*give_back) (MsgLease      *lease,
                          MsgDispatcher *dispatcher);
  /* A dispatcher holding leases left poll(): the transport makes sure it
   * checks, soon, that it comes back. Cheap; called on every main-loop
   * iteration of such a dispatcher. */
  void      (*poke)      (void);
} MsgLeaseFuncs;

/* Whether @self's context is waiting in poll() now, and how many
 * iterations it has made (it made none since the last call that returned
 * the same count: it is busy, or not running). Any thread. */
gboolean       msg_dispatcher_is_polling (MsgDispatcher *self,
                                          guint         *iterations);
/* The context @self dispatches in, %NULL once it was finalized; compare
 * it, do not use it (@self holds no reference). Any thread. */
GMainContext  *msg_dispatcher_get_context (MsgDispatcher *self);
/* Lets @self poll @fd and read @lease (a reference is taken) with @funcs
 * when it is readable; FALSE if @self is going away. Every lease of one
 * dispatcher has the same @funcs (there is one transport). Any thread. */
gboolean       msg_dispatcher_add_lease  (MsgDispatcher       *self,
                                          MsgLease            *lease,
                                          const MsgLeaseFuncs *funcs,
                                          int                  fd);
/* @lease was taken back: @self stops polling its descriptor. Any thread. */
void           msg_dispatcher_drop_lease (MsgDispatcher *self,
                                          MsgLease      *lease);

G_END_DECLS
