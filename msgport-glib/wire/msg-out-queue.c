/* msg-out-queue.c: what a connection has to write
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * An out queue holds encoded frames (and envelopes the I/O thread has yet
 * to encode), each item with the descriptors that go with its first byte,
 * and how far the head is written. Small plain frames queued one after
 * another share an item, a chunk they are copied into. It builds the
 * iovecs of one sendmsg(),
 * advances past what went out, and, when a port moves on, flattens what
 * was not written into the bytes and descriptors its next owner writes
 * first. Nothing here knows a socket: it is tested on its own.
 */

#include "config.h"

#include <string.h>
#include <unistd.h>

#include "msg-out-queue-private.h"

MsgOutItem *
msg_out_item_new (void)
{
  MsgOutItem *item = g_new0 (MsgOutItem, 1);

  item->link.data = item;
  return item;
}

void
msg_out_item_free (MsgOutItem *item)
{
  msg_envelope_free (item->envelope);
#ifdef MSG_HAVE_TSAN
  /* The encoded data of a message is its GVariant's own bytes, whose last
   * unref may be the poster's (msg_variant_unref()): the same lock, so
   * that TSan sees the write's reads ordered before that free. */
  pthread_mutex_lock (&msg_tsan_variant_lock);
  msg_wire_encoded_clear (&item->encoded);
  pthread_mutex_unlock (&msg_tsan_variant_lock);
#else
  msg_wire_encoded_clear (&item->encoded);
#endif
  g_clear_pointer (&item->message, msg_variant_unref);
  g_free (item->chunk);
  g_free (item);
}

void
msg_out_list_free (GQueue *items)
{
  GList *link;

  while ((link = g_queue_pop_head_link (items)) != NULL)
    msg_out_item_free (link->data);
}

gsize
msg_out_item_size (MsgOutItem *item)
{
  if (item->chunk != NULL)
    return item->chunk_len;
  return g_bytes_get_size (item->encoded.head) +
         (item->encoded.data != NULL ? g_bytes_get_size (item->encoded.data) : 0);
}

guint
msg_out_item_unsent_fds (MsgOutItem *item)
{
  return item->encoded.fds != NULL ? item->encoded.fds->len - item->fds_sent : 0;
}

/* Points at most two entries of @iov at what is left to write of @item,
 * adds their length to @total and returns how many it used. */
guint
msg_out_item_add_iov (MsgOutItem      *item,
                      struct iovec *iov,
                      gsize        *total)
{
  gsize head_size;
  gsize offset = item->offset;
  guint n_iov = 0;

  if (item->chunk != NULL)
    {
      iov[0].iov_base = item->chunk + offset;
      iov[0].iov_len = item->chunk_len - offset;
      *total += iov[0].iov_len;
      return 1;
    }
  head_size = g_bytes_get_size (item->encoded.head);
  if (offset < head_size)
    {
      iov[n_iov].iov_base = (guint8 *) g_bytes_get_data (item->encoded.head, NULL) + offset;
      iov[n_iov].iov_len = head_size - offset;
      *total += iov[n_iov++].iov_len;
      offset = head_size;
    }
  if (item->encoded.data != NULL && g_bytes_get_size (item->encoded.data) > 0)
    {
      iov[n_iov].iov_base = (guint8 *) g_bytes_get_data (item->encoded.data, NULL) + (offset - head_size);
      iov[n_iov].iov_len = g_bytes_get_size (item->encoded.data) - (offset - head_size);
      *total += iov[n_iov++].iov_len;
    }
  return n_iov;
}

/* Counts @item's bytes in the backlog, once it is encoded. */
void
msg_out_queue_count (MsgOutQueue *self,
                     MsgOutItem  *item)
{
  self->bytes += msg_out_item_size (item) - item->offset;
  self->peak = MAX (self->peak, self->bytes);
}

void
msg_out_queue_push (MsgOutQueue *self,
                    MsgOutItem  *item)
{
  g_queue_push_tail_link (&self->items, &item->link);
  if (item->envelope == NULL)
    msg_out_queue_count (self, item);
}

/* Copies @item, a plain frame none of which was written, into the chunk
 * at the tail of @self, or a new one there, if it is small enough: then
 * it is counted, and the caller frees @item (which still holds its bytes:
 * the message stays the poster's). Returns FALSE, and leaves @item alone,
 * for any other item: the caller queues it as it is. */
gboolean
msg_out_queue_append_frame (MsgOutQueue *self,
                            MsgOutItem  *item)
{
  MsgOutItem *tail;
  gsize size, head_size;

  if (item->envelope != NULL || item->encoded.fds != NULL || item->chunk != NULL ||
      item->offset > 0 || item->mid_frame || item->is_close)
    return FALSE;
  size = msg_out_item_size (item);
  if (size > MSG_OUT_CHUNK_MAX_FRAME)
    return FALSE;

  tail = g_queue_peek_tail (&self->items);
  if (tail == NULL || tail->chunk == NULL || tail->chunk_len + size > MSG_OUT_CHUNK_SIZE)
    {
      tail = msg_out_item_new ();
      tail->chunk = g_malloc (MSG_OUT_CHUNK_SIZE);
      g_queue_push_tail_link (&self->items, &tail->link);
    }
  /* Beyond @chunk_len: the I/O thread may be writing the bytes before it,
   * unlocked, but never reads these until they are counted. */
  head_size = g_bytes_get_size (item->encoded.head);
  memcpy (tail->chunk + tail->chunk_len, g_bytes_get_data (item->encoded.head, NULL), head_size);
  /* An empty GBytes may have no data pointer at all. */
  if (size > head_size)
    memcpy (tail->chunk + tail->chunk_len + head_size, g_bytes_get_data (item->encoded.data, NULL),
            size - head_size);
  tail->chunk_len += size;
  tail->n_frames++;
  self->bytes += size;
  self->peak = MAX (self->peak, self->bytes);
  return TRUE;
}

/* @self->items was emptied some other way than by writing it (taken, or
 * dropped): returns whether a backlog that deserves a trim went. */
gboolean
msg_out_queue_forget (MsgOutQueue *self)
{
  gboolean backlog = self->peak >= MSG_OUT_TRIM_AFTER_BACKLOG;

  self->bytes = 0;
  self->peak = 0;
  self->trim_wanted = FALSE;
  return backlog;
}

/* Moves @from, an item none of which was written and that is not
 * counted (an envelope that could not be encoded), and the items after it
 * up to @until (excluded; %NULL: all), to @dropped: they will not be
 * written. */
void
msg_out_queue_drop (MsgOutQueue *self,
                    MsgOutItem  *from,
                    MsgOutItem  *until,
                    GQueue      *dropped)
{
  GList *link = &from->link;

  g_assert (from->offset == 0);

  while (link != NULL && link->data != until)
    {
      GList *next = link->next;
      MsgOutItem *item = link->data;

      if (item != from && item->envelope == NULL)
        self->bytes -= msg_out_item_size (item) - item->offset;
      g_queue_unlink (&self->items, link);
      g_queue_push_tail_link (dropped, link);
      link = next;
    }
}

/* @n bytes from the head on went out: the items written whole move to
 * @done, and the number of frames they held is returned; *@close_written
 * is set if one was the close frame. */
guint
msg_out_queue_advance (MsgOutQueue *self,
                       gsize        n,
                       GQueue      *done,
                       gboolean    *close_written)
{
  guint n_done = 0;

  while (n > 0)
    {
      MsgOutItem *item = g_queue_peek_head (&self->items);
      gsize remaining = msg_out_item_size (item) - item->offset;

      if (n < remaining)
        {
          item->offset += n;
          self->bytes -= n;
          return n_done;
        }
      n -= remaining;
      self->bytes -= remaining;
      g_queue_pop_head_link (&self->items);
      g_queue_push_tail_link (done, &item->link);
      n_done += item->chunk != NULL ? item->n_frames : 1;
      *close_written |= item->is_close;
    }
  if (self->items.length == 0)
    {
      self->trim_wanted |= self->peak >= MSG_OUT_TRIM_AFTER_BACKLOG;
      self->bytes = 0;
      self->peak = 0;
    }
  return n_done;
}

/* Points @iov at the plain frames at the head of @self, as many as one
 * sendmsg() takes (at most MSG_OUT_MAX_IOV - 1 entries and about
 * MSG_OUT_MAX_WRITE_BYTES), and returns how many entries it used, their
 * length in @total. It stops before an envelope (not encoded yet), and
 * before any item with descriptors still to send, unless @with_fds: then
 * the head may carry descriptors, which go with its first byte, and
 * stops before the next that does. If the head has more descriptors than
 * one sendmsg() carries, only its next byte is taken. Posters do not
 * write the close frame (@with_fds FALSE stops there too). */
guint
msg_out_queue_fill_iov (MsgOutQueue  *self,
                        struct iovec *iov,
                        gboolean      with_fds,
                        gsize        *total)
{
  MsgOutItem *head = g_queue_peek_head (&self->items);
  guint n_iov = 0;

  *total = 0;
  for (GList *l = self->items.head;
       l != NULL && n_iov < MSG_OUT_MAX_IOV - 1 && *total < MSG_OUT_MAX_WRITE_BYTES;
       l = l->next)
    {
      MsgOutItem *item = l->data;

      if (item->envelope != NULL)
        break;
      if (!with_fds && (item->is_close || msg_out_item_unsent_fds (item) > 0))
        break;
      if (with_fds && item != head && msg_out_item_unsent_fds (item) > 0)
        break;
      n_iov += msg_out_item_add_iov (item, iov + n_iov, total);
      if (with_fds && msg_out_item_unsent_fds (head) > MSG_WIRE_MAX_FDS_PER_SEND)
        {
          n_iov = 1;
          iov[0].iov_len = 1;
          *total = 1;
          break;
        }
    }
  return n_iov;
}

/* The rest of a frame (@mid_frame) or whole frames that a port's previous
 * owner had not written: @size bytes of @prefix from @offset, and @n_fds
 * descriptors of @fds from @first_fd, which are taken (-1 left there). */
MsgOutItem *
msg_out_item_new_raw (GBytes   *prefix,
                      gsize     offset,
                      gsize     size,
                      gboolean  mid_frame,
                      GArray   *fds,
                      guint     first_fd,
                      guint     n_fds)
{
  MsgOutItem *item = msg_out_item_new ();

  item->mid_frame = mid_frame;
  item->encoded.head = g_bytes_new_from_bytes (prefix, offset, size);
  item->encoded.fds = g_array_new (FALSE, FALSE, sizeof (int));
  for (guint i = 0; i < n_fds; i++)
    {
      g_array_append_val (item->encoded.fds, g_array_index (fds, int, first_fd + i));
      g_array_index (fds, int, first_fd + i) = -1;
    }
  return item;
}

/* What a moving port had not written goes on with it: the rest of the
 * bytes of @items (taken; all encoded), and their descriptors not sent
 * yet, appended to @bytes and @fds. *@partial is set to what is left of a
 * frame partly written, or of one that came with the port in the middle
 * (only the head can be either), else left alone. */
void
msg_out_list_flatten (GQueue     *items,
                      GByteArray *bytes,
                      GArray     *fds,
                      gsize      *partial)
{
  GList *link;

  while ((link = g_queue_pop_head_link (items)) != NULL)
    {
      MsgOutItem *item = link->data;
      gsize head_size;

      g_assert (item->envelope == NULL);
      if (item->chunk != NULL)
        {
          gsize start = 0, end = 0;

          /* Only the frame the head was written into is partly written. */
          while (end < item->offset)
            {
              gsize frame_size = 0;
              guint n_fds;

              if (!msg_wire_frame_extent (item->chunk + end, item->chunk_len - end,
                                          &frame_size, &n_fds))
                g_assert_not_reached ();
              start = end;
              end += frame_size;
            }
          if (end > item->offset && start < item->offset)
            *partial = end - item->offset;
          g_byte_array_append (bytes, item->chunk + item->offset, item->chunk_len - item->offset);
          msg_out_item_free (item);
          continue;
        }
      head_size = g_bytes_get_size (item->encoded.head);
      if (item->offset > 0 || item->mid_frame)
        *partial = msg_out_item_size (item) - item->offset;
      if (item->offset < head_size)
        g_byte_array_append (bytes,
                             (const guint8 *) g_bytes_get_data (item->encoded.head, NULL) + item->offset,
                             head_size - item->offset);
      if (item->encoded.data != NULL)
        {
          gsize skip = item->offset > head_size ? item->offset - head_size : 0;

          g_byte_array_append (bytes,
                               (const guint8 *) g_bytes_get_data (item->encoded.data, NULL) + skip,
                               g_bytes_get_size (item->encoded.data) - skip);
        }
      for (guint i = item->fds_sent; item->encoded.fds != NULL && i < item->encoded.fds->len; i++)
        {
          g_array_append_val (fds, g_array_index (item->encoded.fds, int, i));
          g_array_index (item->encoded.fds, int, i) = -1;
        }
      msg_out_item_free (item);
    }
}
