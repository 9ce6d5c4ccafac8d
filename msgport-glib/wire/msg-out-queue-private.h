/* msg-out-queue-private.h: what a connection has to write
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <sys/uio.h>

#include "msg-endpoint-private.h"
#include "msg-wire-private.h"

G_BEGIN_DECLS

/* The most one sendmsg() is given: iovec entries, and bytes (about). */
#define MSG_OUT_MAX_IOV               64
#define MSG_OUT_MAX_WRITE_BYTES       (4 * 1024 * 1024)
/* An out queue that held at least this many bytes at once (a backlog,
 * to a peer that did not read) gives the memory back when it empties:
 * see msg_io_give_back_memory(). */
#define MSG_OUT_TRIM_AFTER_BACKLOG    (32 * 1024 * 1024)
/* Plain frames of at most MSG_OUT_CHUNK_MAX_FRAME bytes that are queued
 * (not written at once) are copied, back to back, into chunks of
 * MSG_OUT_CHUNK_SIZE bytes: one item, one iovec entry and one free for
 * many frames, and the poster keeps its message, which it frees itself. */
#define MSG_OUT_CHUNK_SIZE            (64 * 1024)
#define MSG_OUT_CHUNK_MAX_FRAME       (4 * 1024)

typedef struct
{
  GList           link;       /* link.data == the item */
  MsgEnvelope    *envelope;   /* (owned) (nullable): to be encoded by the I/O thread */
  GVariant       *message;    /* (owned) (nullable): the plain message @encoded holds */
  MsgWireEncoded  encoded;
  gsize           offset;     /* bytes of head and data written */
  guint           fds_sent;
  gboolean        is_close;
  gboolean        mid_frame;  /* starts inside a frame: the rest of one that a
                               * port's previous owner had partly written */
  guint8         *chunk;      /* (owned) (nullable): whole plain frames, copied
                               * in by msg_out_queue_append_frame(), instead
                               * of @encoded; its bytes up to @chunk_len do
                               * not change, later ones are appended */
  gsize           chunk_len;
  guint           n_frames;   /* in @chunk */
} MsgOutItem;

/* The items, and the bytes they hold encoded and unwritten. Its owner
 * locks it (connection->lock). */
typedef struct
{
  GQueue    items;        /* of MsgOutItem */
  gsize     bytes;        /* encoded and not written yet */
  gsize     peak;         /* the most @bytes was since @items was empty */
  gboolean  trim_wanted;  /* a backlog drained: msg_io_give_back_memory() */
} MsgOutQueue;

MsgOutItem *msg_out_item_new         (void);
MsgOutItem *msg_out_item_new_raw     (GBytes        *prefix,
                                      gsize          offset,
                                      gsize          size,
                                      gboolean       mid_frame,
                                      GArray        *fds,
                                      guint          first_fd,
                                      guint          n_fds);
void        msg_out_item_free        (MsgOutItem    *item);
gsize       msg_out_item_size        (MsgOutItem    *item);
guint       msg_out_item_unsent_fds  (MsgOutItem    *item);
guint       msg_out_item_add_iov     (MsgOutItem    *item,
                                      struct iovec  *iov,
                                      gsize         *total);
void        msg_out_list_free        (GQueue        *items);
void        msg_out_list_flatten     (GQueue        *items,
                                      GByteArray    *bytes,
                                      GArray        *fds,
                                      gsize         *partial);

void        msg_out_queue_count      (MsgOutQueue   *self,
                                      MsgOutItem    *item);
void        msg_out_queue_push       (MsgOutQueue   *self,
                                      MsgOutItem    *item);
gboolean    msg_out_queue_append_frame (MsgOutQueue *self,
                                      MsgOutItem    *item);
gboolean    msg_out_queue_forget     (MsgOutQueue   *self);
void        msg_out_queue_drop       (MsgOutQueue   *self,
                                      MsgOutItem    *from,
                                      MsgOutItem    *until,
                                      GQueue        *dropped);
guint       msg_out_queue_advance    (MsgOutQueue   *self,
                                      gsize          n,
                                      GQueue        *done,
                                      gboolean      *close_written);
guint       msg_out_queue_fill_iov   (MsgOutQueue   *self,
                                      struct iovec  *iov,
                                      gboolean       with_fds,
                                      gsize         *total);

G_END_DECLS
