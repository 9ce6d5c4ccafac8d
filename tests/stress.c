/* stress.c: ports moving at random between threads and processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Many channels: the main thread keeps port1 of each and posts numbered
 * messages of random sizes on it, some above the memfd threshold (lowered
 * to MEMFD_THRESHOLD here, in the children too); port2 lives with a
 * "holder", a worker thread or a child process, which echoes every message
 * back. At random, port2 is called back to the main thread and sent on to
 * another holder (or the same) while traffic flows; port1 is closed;
 * port2 is closed by its holder, or dropped unstarted; a child is killed
 * with SIGKILL (and replaced). Holders report each close of a port2 they
 * hold, with its reason, to the main thread.
 *
 * Checked all along: echoes arrive on port1 exactly once and in order,
 * with the right contents; a port emits `close` at most once. Checked at
 * the end, when every channel still open has had all its echoes and is
 * closed: every port1 and every port2 whose holder lived emitted `close`
 * exactly once, with the reason that matches what ended the channel; the
 * children exited cleanly (but the killed ones); and the process is back
 * to the descriptors and threads it had before.
 *
 *   stress                   the bounded run of the test suite: seeds 1-4
 *   stress --seed N          one seed, as a failure prints it
 *   stress --seconds S       random seeds, one after the other, for S
 *                            seconds (also MSG_STRESS_SECONDS=S)
 *   stress --steps N         random steps per seed (default 20000)
 *   STRESS_DEBUG=1 stress    traces every command, close and kill
 *
 * Decisions come from the seed; the timing of threads and processes does
 * not, so a seed replays the same actions, not the same interleaving.
 */

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg-test-utils.h"
#include "wire/msg-wire-private.h"

#define MEMFD_THRESHOLD  (16 * 1024)
#define N_CHANNELS       16
#define N_WORKERS        3
#define N_CHILDREN       3
#define MAX_OUTSTANDING  64   /* echoes a channel may wait for */
#define DEFAULT_STEPS    20000

/* The size of message @seq of channel @id: mostly small, some up to
 * 4 KiB, a few around and above the memfd threshold. A pure function,
 * so the receiver knows what to expect. */
static guint64
mix (guint64 x)
{
  /* splitmix64 */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static gsize
message_size (guint64 id,
              guint64 seq)
{
  guint64 h = mix ((id << 40) ^ seq);
  guint r = h % 1000;

  h >>= 10;
  if (r < 700)
    return h % 64;
  if (r < 950)
    return 64 + h % 4032;
  return MEMFD_THRESHOLD / 2 + h % (MEMFD_THRESHOLD * 3);
}

static guint8
message_byte (guint64 id,
              guint64 seq,
              gsize   i)
{
  return (guint8) (id * 131 + seq * 31 + i * 7);
}

static GVariant *
message_new (guint64 id,
             guint64 seq)
{
  gsize size = message_size (id, seq);
  guint8 *bytes = g_malloc (size + 1);

  for (gsize i = 0; i < size; i++)
    bytes[i] = message_byte (id, seq, i);
  return g_variant_new ("(t@ay)", seq,
                        g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, bytes, size,
                                                 TRUE, g_free, bytes));
}

/* Holders: a worker thread or a child process ----------------------------- */

/* Commands from the main thread on a holder's control port, "(su)": a
 * command and a channel id.
 *   take  (port2 attached) start it and echo what comes
 *   drop  (port2 attached) let it go, unstarted
 *   give  post port2 back: ("back", id) with port2 attached, or ("gone",
 *         id) if port2 closed already (its peer was closed meanwhile)
 *   close close port2
 * The holder reports ("closed", id, code) when a port2 emits `close`. */

typedef struct
{
  MsgPortMain *control;  /* (owned) */
  GHashTable  *ports;    /* channel id -> MsgPortMain (owned) */
  gboolean     done;
} Holder;

static void
holder_echo (MsgPortMain     *port,
             MsgMessageEvent *event,
             gpointer         user_data)
{
  g_autoptr(GError) error = NULL;

  if (!msg_port_main_post (port, msg_message_event_get_data (event), &error))
    g_error ("holder: echo failed: %s", error->message);
}

static void
holder_port_closed (MsgPortMain *port,
                    gpointer     user_data)
{
  Holder *holder = user_data;
  guint id = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (port), "stress-id"));
  g_autoptr(GError) reason = msg_port_main_get_close_reason (port);
  g_autoptr(GError) error = NULL;

  if (!msg_port_main_post (holder->control,
                           g_variant_new ("(sui)", "closed", id, reason != NULL ? reason->code : -1),
                           &error))
    g_error ("holder: report failed: %s", error->message);
  if (g_getenv ("STRESS_DEBUG"))
    g_printerr ("%d: closed %u: %s\n", getpid (), id, reason ? reason->message : "-");
  g_hash_table_remove (holder->ports, GUINT_TO_POINTER (id));
}

static void
holder_command (MsgPortMain     *control,
                MsgMessageEvent *event,
                gpointer         user_data)
{
  Holder *holder = user_data;
  const char *command;
  guint id;
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);
  MsgPortMain *port;
  g_autoptr(GError) error = NULL;

  g_variant_get (msg_message_event_get_data (event), "(&su)", &command, &id);
  if (g_getenv ("STRESS_DEBUG"))
    g_printerr ("%d: %s %u (%u ports)\n", getpid (), command, id, n_ports);
  if (strcmp (command, "take") == 0)
    {
      g_assert_cmpuint (n_ports, ==, 1);
      port = ports[0];
      g_object_set_data (G_OBJECT (port), "stress-id", GUINT_TO_POINTER (id));
      g_signal_connect (port, "message", G_CALLBACK (holder_echo), holder);
      g_signal_connect (port, "close", G_CALLBACK (holder_port_closed), holder);
      g_hash_table_insert (holder->ports, GUINT_TO_POINTER (id), g_object_ref (port));
      msg_port_main_start (port);
    }
  else if (strcmp (command, "drop") == 0)
    g_assert_cmpuint (n_ports, ==, 1);  /* the event owns it, and drops it */
  else if (strcmp (command, "give") == 0)
    {
      port = g_hash_table_lookup (holder->ports, GUINT_TO_POINTER (id));
      /* If port1 was closed meanwhile, port2 may have closed (and been
       * reported) before this came. */
      if (port == NULL)
        {
          if (!msg_port_main_post (control, g_variant_new ("(sui)", "gone", id, 0), &error))
            g_error ("holder: answering failed: %s", error->message);
          return;
        }
      if (!msg_port_main_post_message (control, g_variant_new ("(sui)", "back", id, 0),
                                       &port, 1, &error))
        g_error ("holder: giving back failed: %s", error->message);
      g_hash_table_remove (holder->ports, GUINT_TO_POINTER (id));
    }
  else if (strcmp (command, "close") == 0)
    {
      port = g_hash_table_lookup (holder->ports, GUINT_TO_POINTER (id));
      if (port == NULL)
        g_error ("holder: asked to close channel %u, which it does not hold", id);
      msg_port_main_close (port);  /* `close` reports it */
    }
  else
    g_error ("holder: unknown command %s", command);
}

static void
holder_control_closed (MsgPortMain *control,
                       gpointer     user_data)
{
  Holder *holder = user_data;

  /* The main thread holds nothing back: it ends every channel first. */
  if (g_hash_table_size (holder->ports) != 0)
    g_error ("holder: its control port closed while it held %u ports",
             g_hash_table_size (holder->ports));
  holder->done = TRUE;
}

static Holder *
holder_new (MsgPortMain *control)
{
  Holder *holder = g_new0 (Holder, 1);

  holder->control = g_object_ref (control);
  holder->ports = g_hash_table_new_full (NULL, NULL, NULL, g_object_unref);
  g_signal_connect (control, "message", G_CALLBACK (holder_command), holder);
  g_signal_connect (control, "close", G_CALLBACK (holder_control_closed), holder);
  msg_port_main_start (control);
  return holder;
}

/* In the holder's thread. */
static void
holder_free (Holder *holder)
{
  g_signal_handlers_disconnect_by_data (holder->control, holder);
  g_clear_object (&holder->control);
  g_hash_table_unref (holder->ports);
  g_free (holder);
}

/* "drop" lets a port go unstarted on purpose, maybe with messages queued
 * for it: the library's warning for that ("forgot to call start()") is
 * expected here, and only that warning is neither fatal (the fatal
 * handler, which GTest resets for each test case) nor printed (the
 * handler of the domain, in place of GTest's, which would print it as a
 * "Bail out!"). */
static gboolean
is_drop_warning (const char     *log_domain,
                 GLogLevelFlags  log_level,
                 const char     *message)
{
  return g_strcmp0 (log_domain, "Msg") == 0 && (log_level & G_LOG_LEVEL_WARNING) != 0 &&
         g_str_has_prefix (message, "A port that was never started");
}

static gboolean
drop_warning_not_fatal (const char     *log_domain,
                        GLogLevelFlags  log_level,
                        const char     *message,
                        gpointer        user_data)
{
  return !is_drop_warning (log_domain, log_level, message);
}

static void
drop_warning_quiet (const char     *log_domain,
                    GLogLevelFlags  log_level,
                    const char     *message,
                    gpointer        user_data)
{
  if (!is_drop_warning (log_domain, log_level, message))
    g_log_default_handler (log_domain, log_level, message, user_data);
}

static void
tolerate_drop_warnings (void)
{
  static gsize handler = 0;

  g_test_log_set_fatal_handler (drop_warning_not_fatal, NULL);
  if (g_once_init_enter (&handler))
    g_once_init_leave (&handler, g_log_set_handler ("Msg", G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL,
                                                    drop_warning_quiet, NULL));
}

static int
child_main (void)
{
  MsgPortMain *parent = msg_port_main_get_parent_port ();
  Holder *holder;

  msg_wire_set_memfd_threshold (MEMFD_THRESHOLD);
  if (parent == NULL)
    g_error ("child: no parent port");
  holder = holder_new (parent);
  while (!holder->done)
    g_main_context_iteration (NULL, TRUE);
  holder_free (holder);
  return 0;
}

/* The main thread ----------------------------------------------------------- */

typedef enum
{
  CAUSE_NONE,
  CAUSE_CLOSE,         /* the main thread closed port1 */
  CAUSE_HOLDER_CLOSE,  /* the holder closed port2 */
  CAUSE_DROP,          /* port2 was dropped unstarted */
} Cause;

typedef struct
{
  guint        id;
  MsgPortMain *port1;         /* (owned) */
  guint64      n_posted;
  guint64      n_echoed;
  guint        holder;        /* where port2 is, or is going */
  gboolean     returning;     /* "give" sent, "back" not arrived */
  gboolean     drop_on_return;
  Cause        cause;
  gboolean     holder_killed; /* port2 was with a child that was killed, or
                               * went through one that was (below) */
  guint64      bridges;       /* children port2 may still go through, by index */
  guint        n_close;
  gint         close_code;
  guint        n_reports;
  gint         report_code;
} Channel;

typedef struct
{
  guint          index;
  MsgPortMain   *control;     /* (owned) */
  MsgTestWorker *worker;      /* (owned) (nullable) */
  Holder        *worker_holder;  /* in the worker's thread */
  GSubprocess   *process;     /* (owned) (nullable) */
  gboolean       killed;
  gboolean       exited;
  gboolean       exit_ok;
  guint          n_control_close;
  gint           control_close_code;
} HolderRef;

typedef struct
{
  guint32    seed;
  GRand     *rand;
  GPtrArray *channels;   /* (element-type Channel): all, ended too */
  GPtrArray *active;     /* (element-type Channel): N_CHANNELS not ended by a cause */
  GPtrArray *holders;    /* (element-type HolderRef) */
  guint      next_id;
  guint      n_kills;
  guint      max_kills;
  guint64    killed;     /* holders killed, by index */
  guint64    n_messages;
  guint      n_moves;
} Stress;

static Stress *current;  /* for failure messages */

#define stress_fail(...) \
  g_error ("seed %u: %s (replay: stress --seed %u)", current->seed, \
           g_strdup_printf (__VA_ARGS__), current->seed)

static Channel *
channel_find (Stress *self,
              guint   id)
{
  g_assert_cmpuint (id, <, self->channels->len);
  return g_ptr_array_index (self->channels, id);
}

static void
channel_echo (MsgPortMain     *port,
              MsgMessageEvent *event,
              gpointer         user_data)
{
  Channel *channel = user_data;
  guint64 seq;
  g_autoptr(GVariant) bytes = NULL;
  const guint8 *data;
  gsize size, expected;

  if (channel->n_close > 0)
    stress_fail ("channel %u: a message after close", channel->id);
  g_variant_get (msg_message_event_get_data (event), "(t@ay)", &seq, &bytes);
  if (seq != channel->n_echoed)
    stress_fail ("channel %u: echo %" G_GUINT64_FORMAT " arrived, expected %" G_GUINT64_FORMAT,
                 channel->id, seq, channel->n_echoed);
  data = g_variant_get_fixed_array (bytes, &size, 1);
  expected = message_size (channel->id, seq);
  if (size != expected)
    stress_fail ("channel %u: echo %" G_GUINT64_FORMAT " has %" G_GSIZE_FORMAT " bytes, not %"
                 G_GSIZE_FORMAT, channel->id, seq, size, expected);
  for (gsize i = 0; i < size; i += 1 + i / 16)
    if (data[i] != message_byte (channel->id, seq, i))
      stress_fail ("channel %u: echo %" G_GUINT64_FORMAT " is corrupt at byte %" G_GSIZE_FORMAT,
                   channel->id, seq, i);
  channel->n_echoed++;
}

static void
channel_closed (MsgPortMain *port,
                gpointer     user_data)
{
  Channel *channel = user_data;
  g_autoptr(GError) reason = msg_port_main_get_close_reason (port);

  if (g_getenv ("STRESS_DEBUG"))
    g_printerr ("main: port1 %u closed: %s\n", channel->id, reason ? reason->message : "-");
  if (++channel->n_close > 1)
    stress_fail ("channel %u: port1 emitted close twice", channel->id);
  channel->close_code = reason != NULL ? reason->code : -1;
}

static HolderRef *
pick_holder (Stress *self)
{
  for (;;)
    {
      HolderRef *holder = g_ptr_array_index (self->holders,
                                             g_rand_int_range (self->rand, 0, self->holders->len));

      if (!holder->killed)
        return holder;
    }
}

static void
send_command (HolderRef   *holder,
              const char  *command,
              Channel     *channel,
              MsgPortMain *port)
{
  g_autoptr(GError) error = NULL;

  if (g_getenv ("STRESS_DEBUG"))
    g_printerr ("main: %s %u to holder %u\n", command, channel->id, holder->index);

  if (!msg_port_main_post_message (holder->control, g_variant_new ("(su)", command, channel->id),
                                   port != NULL ? &port : NULL, port != NULL ? 1 : 0, &error))
    stress_fail ("posting %s to holder %u: %s", command, holder->index, error->message);
}

/* Sends port2 of @channel to a holder picked at random. */
static void
send_port2 (Stress      *self,
            Channel     *channel,
            MsgPortMain *port2)
{
  HolderRef *holder = pick_holder (self);

  channel->holder = holder->index;
  channel->returning = FALSE;
  if (channel->drop_on_return)
    {
      channel->cause = CAUSE_DROP;
      send_command (holder, "drop", channel, port2);
    }
  else
    send_command (holder, "take", channel, port2);
  self->n_moves++;
}

static void
control_message (MsgPortMain     *control,
                 MsgMessageEvent *event,
                 gpointer         user_data)
{
  HolderRef *holder = user_data;
  Stress *self = current;
  const char *what;
  guint id;
  gint code;
  Channel *channel;
  guint n_ports = 0;
  MsgPortMain **ports = msg_message_event_get_ports (event, &n_ports);

  g_variant_get (msg_message_event_get_data (event), "(&sui)", &what, &id, &code);
  channel = channel_find (self, id);
  if (strcmp (what, "back") == 0)
    {
      if (!channel->returning || channel->holder != holder->index || n_ports != 1)
        stress_fail ("channel %u: came back from holder %u unasked", id, holder->index);
      /* A port whose peer is closed cannot move out of a process: the
       * process bridges it, and stays on its way. Otherwise it is alive,
       * here, whatever happens to the holder it left. */
      if (channel->cause == CAUSE_CLOSE && holder->process != NULL)
        {
          g_assert_cmpuint (holder->index, <, 64);
          channel->bridges |= G_GUINT64_CONSTANT (1) << holder->index;
        }
      channel->holder_killed = (channel->bridges & self->killed) != 0;
      send_port2 (self, channel, ports[0]);
    }
  else if (strcmp (what, "gone") == 0)
    {
      if (!channel->returning || channel->holder != holder->index || channel->n_reports != 1 ||
          channel->cause != CAUSE_CLOSE)
        stress_fail ("channel %u: holder %u lost it unasked", id, holder->index);
      channel->returning = FALSE;
    }
  else if (strcmp (what, "closed") == 0)
    {
      if (++channel->n_reports > 1)
        stress_fail ("channel %u: port2 emitted close twice", id);
      channel->report_code = code;
    }
  else
    stress_fail ("holder %u: unknown report %s", holder->index, what);
}

static void
control_closed (MsgPortMain *control,
                gpointer     user_data)
{
  HolderRef *holder = user_data;
  g_autoptr(GError) reason = msg_port_main_get_close_reason (control);

  if (++holder->n_control_close > 1)
    stress_fail ("holder %u: control port emitted close twice", holder->index);
  holder->control_close_code = reason != NULL ? reason->code : -1;
  if (reason != NULL && reason->code != MSG_PORT_ERROR_CLOSED && !holder->killed)
    stress_fail ("holder %u: its control port closed: %s", holder->index, reason->message);
}

static gboolean
worker_start_holder (gpointer data)
{
  HolderRef *holder = data;
  MsgPortMain *control = g_object_get_data (G_OBJECT (holder->control), "stress-other-end");

  holder->worker_holder = holder_new (control);
  g_object_set_data (G_OBJECT (holder->control), "stress-other-end", NULL);
  return G_SOURCE_REMOVE;
}

static gboolean
worker_free_holder (gpointer data)
{
  HolderRef *holder = data;

  /* The main thread closed the control port; its close may not have been
   * dispatched here yet. */
  while (!holder->worker_holder->done)
    g_main_context_iteration (g_main_context_get_thread_default (), TRUE);
  g_clear_pointer (&holder->worker_holder, holder_free);
  return G_SOURCE_REMOVE;
}

static HolderRef *
holder_ref_new (Stress   *self,
                gboolean  child)
{
  HolderRef *holder = g_new0 (HolderRef, 1);
  g_autoptr(GError) error = NULL;

  holder->index = self->holders->len;
  if (child)
    {
      g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
      g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "stress", NULL);

      holder->control = msg_port_main_new_for_launcher (launcher, -1, &error);
      g_assert_no_error (error);
      holder->process = g_subprocess_launcher_spawn (launcher, &error, path, "--child", NULL);
      g_assert_no_error (error);
    }
  else
    {
      g_autoptr(MsgChannelMain) channel = msg_channel_main_new ();

      holder->control = g_object_ref (msg_channel_main_get_port1 (channel));
      g_object_set_data_full (G_OBJECT (holder->control), "stress-other-end",
                              g_object_ref (msg_channel_main_get_port2 (channel)), g_object_unref);
      holder->worker = msg_test_worker_new ("stress-holder");
      msg_test_worker_invoke (holder->worker, worker_start_holder, holder);
    }
  g_signal_connect (holder->control, "message", G_CALLBACK (control_message), holder);
  g_signal_connect (holder->control, "close", G_CALLBACK (control_closed), holder);
  msg_port_main_start (holder->control);
  g_ptr_array_add (self->holders, holder);
  return holder;
}

static void
child_exited (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  HolderRef *holder = user_data;
  g_autoptr(GError) error = NULL;

  holder->exit_ok = g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error);
  holder->exited = TRUE;
}

static void
channel_new (Stress *self)
{
  Channel *channel = g_new0 (Channel, 1);
  g_autoptr(MsgChannelMain) pair = msg_channel_main_new ();

  channel->id = self->next_id++;
  channel->port1 = g_object_ref (msg_channel_main_get_port1 (pair));
  channel->close_code = -1;
  channel->report_code = -1;
  g_signal_connect (channel->port1, "message", G_CALLBACK (channel_echo), channel);
  g_signal_connect (channel->port1, "close", G_CALLBACK (channel_closed), channel);
  msg_port_main_start (channel->port1);
  g_ptr_array_add (self->channels, channel);
  g_ptr_array_add (self->active, channel);
  send_port2 (self, channel, msg_channel_main_get_port2 (pair));
}

/* Whether port2 of @channel is with a live holder, not on its way. */
static gboolean
channel_settled (Stress  *self,
                 Channel *channel)
{
  HolderRef *holder = g_ptr_array_index (self->holders, channel->holder);

  return channel->cause == CAUSE_NONE && channel->n_close == 0 && !channel->returning &&
         !holder->killed;
}

/* Ends @channel's time among the active ones, and puts a new one there. */
static void
channel_retire (Stress *self,
                guint   slot)
{
  g_ptr_array_remove_index_fast (self->active, slot);
  channel_new (self);
}

static void
kill_child (Stress *self)
{
  HolderRef *victim = NULL;

  for (guint tries = 0; tries < 8 && victim == NULL; tries++)
    {
      HolderRef *holder = pick_holder (self);

      if (holder->process != NULL)
        victim = holder;
    }
  if (victim == NULL)
    return;

  victim->killed = TRUE;
  g_assert_cmpuint (victim->index, <, 64);
  self->killed |= G_GUINT64_CONSTANT (1) << victim->index;
  self->n_kills++;
  if (g_getenv ("STRESS_DEBUG"))
    g_printerr ("main: kill holder %u\n", victim->index);
  g_subprocess_send_signal (victim->process, SIGKILL);
  for (guint i = 0; i < self->channels->len; i++)
    {
      Channel *channel = g_ptr_array_index (self->channels, i);

      if (channel->holder == victim->index ||
          (channel->bridges & (G_GUINT64_CONSTANT (1) << victim->index)) != 0)
        channel->holder_killed = TRUE;
    }
  holder_ref_new (self, TRUE);
}

/* One random action. */
static void
step (Stress *self)
{
  guint slot = g_rand_int_range (self->rand, 0, self->active->len);
  Channel *channel = g_ptr_array_index (self->active, slot);
  guint r = g_rand_int_range (self->rand, 0, 1000);
  gboolean settled = channel_settled (self, channel);
  g_autoptr(GError) error = NULL;

  /* A channel that ended by itself (its holder was killed) makes room. */
  if (channel->n_close > 0)
    {
      channel_retire (self, slot);
      return;
    }

  if (r < 700)
    {
      guint n = g_rand_int_range (self->rand, 1, 17);

      for (guint i = 0; i < n && channel->n_posted - channel->n_echoed < MAX_OUTSTANDING; i++)
        {
          if (!msg_port_main_post (channel->port1, message_new (channel->id, channel->n_posted), &error))
            stress_fail ("channel %u: post failed: %s", channel->id, error->message);
          channel->n_posted++;
          self->n_messages++;
        }
    }
  else if (r < 900)
    {
      /* Called back, and sent on when it arrives. */
      if (settled)
        {
          channel->returning = TRUE;
          send_command (g_ptr_array_index (self->holders, channel->holder), "give", channel, NULL);
        }
    }
  else if (r < 905)
    {
      channel->cause = CAUSE_CLOSE;
      if (g_getenv ("STRESS_DEBUG"))
        g_printerr ("main: close port1 %u\n", channel->id);
      msg_port_main_close (channel->port1);
      channel_retire (self, slot);
    }
  else if (r < 910)
    {
      if (settled)
        {
          channel->cause = CAUSE_HOLDER_CLOSE;
          send_command (g_ptr_array_index (self->holders, channel->holder), "close", channel, NULL);
          channel_retire (self, slot);
        }
    }
  else if (r < 915)
    {
      /* Called back, and dropped where it lands next. */
      if (settled)
        {
          channel->drop_on_return = TRUE;
          channel->returning = TRUE;
          send_command (g_ptr_array_index (self->holders, channel->holder), "give", channel, NULL);
          channel_retire (self, slot);
        }
    }
  else if (r < 918 && self->n_kills < self->max_kills)
    kill_child (self);
}

static gboolean
step_cb (gpointer data)
{
  gboolean *stepped = data;

  *stepped = TRUE;
  return G_SOURCE_CONTINUE;
}

static guint
count_entries (const char *path)
{
  DIR *dir = opendir (path);
  struct dirent *entry;
  guint n = 0;

  g_assert_nonnull (dir);
  while ((entry = readdir (dir)) != NULL)
    n += entry->d_name[0] != '.';
  closedir (dir);
  return n;
}

/* The open descriptors, each as "N -> what", in a set. */
static GHashTable *
list_fds (void)
{
  GHashTable *fds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  GDir *dir = g_dir_open ("/proc/self/fd", 0, NULL);
  const char *name;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename ("/proc/self/fd", name, NULL);
      g_autofree char *target = g_file_read_link (path, NULL);

      /* NULL: the directory's own descriptor, closed since */
      if (target != NULL)
        g_hash_table_add (fds, g_strdup_printf ("%s -> %s", name, target));
    }
  g_dir_close (dir);
  return fds;
}

/* The first descriptor in @now that was not in @before, or NULL. Not the
 * same count: a descriptor of the start may have been on its way out. */
static char *
new_fd (GHashTable *before,
        GHashTable *now)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, now);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (!g_hash_table_contains (before, key) && strstr (key, "/proc/") == NULL)
      return g_strdup (key);
  return NULL;
}

static guint
count_threads (void)
{
  return count_entries ("/proc/self/task");
}


/* Whether @channel's ending matches its cause. */
static void
check_channel (Channel *channel)
{
  gint expected_close = -1, expected_report = -1;

  switch (channel->cause)
    {
    case CAUSE_CLOSE:
      expected_close = MSG_PORT_ERROR_CLOSED;
      expected_report = MSG_PORT_ERROR_PEER_CLOSED;
      break;
    case CAUSE_HOLDER_CLOSE:
      expected_close = MSG_PORT_ERROR_PEER_CLOSED;
      expected_report = MSG_PORT_ERROR_CLOSED;
      break;
    case CAUSE_DROP:
      expected_close = MSG_PORT_ERROR_PEER_CLOSED;
      break;
    case CAUSE_NONE:
      if (!channel->holder_killed)
        stress_fail ("channel %u: closed (code %d) with no cause", channel->id, channel->close_code);
      expected_close = MSG_PORT_ERROR_PEER_GONE;
      break;
    default:
      g_assert_not_reached ();
    }

  if (channel->n_close != 1)
    stress_fail ("channel %u: port1 emitted close %u times", channel->id, channel->n_close);
  if (channel->holder_killed)
    {
      /* The kill may come first, or the holder may be gone before it
       * reported, or port2 may have lost a bridge through it. A port2 still on its way to the child, in the queue of
       * the control port's connection, is dropped with it: PEER_CLOSED. */
      if (channel->close_code != expected_close && channel->close_code != MSG_PORT_ERROR_PEER_GONE &&
          channel->close_code != MSG_PORT_ERROR_PEER_CLOSED)
        stress_fail ("channel %u: port1 closed with code %d, expected %d, PEER_GONE or PEER_CLOSED",
                     channel->id, channel->close_code, expected_close);
      if (channel->n_reports > 0 && channel->report_code != expected_report &&
          channel->report_code != MSG_PORT_ERROR_PEER_GONE)
        stress_fail ("channel %u: port2 closed with code %d, expected %d or PEER_GONE",
                     channel->id, channel->report_code, expected_report);
      return;
    }
  if (channel->close_code != expected_close)
    stress_fail ("channel %u (cause %d): port1 closed with code %d, expected %d",
                 channel->id, channel->cause, channel->close_code, expected_close);
  if (expected_report < 0 && channel->n_reports != 0)
    stress_fail ("channel %u: port2 was dropped but its holder reported a close", channel->id);
  if (expected_report >= 0 && (channel->n_reports != 1 || channel->report_code != expected_report))
    stress_fail ("channel %u (cause %d): port2 reported %u closes, code %d, expected one, code %d",
                 channel->id, channel->cause, channel->n_reports, channel->report_code, expected_report);
}

static gboolean
all_ended (Stress *self)
{
  for (guint i = 0; i < self->channels->len; i++)
    {
      Channel *channel = g_ptr_array_index (self->channels, i);

      if (channel->n_close == 0 || (channel->returning && !channel->holder_killed))
        return FALSE;
      if (!channel->holder_killed && channel->cause != CAUSE_DROP && channel->n_reports == 0)
        return FALSE;
    }
  return TRUE;
}

static gboolean
all_echoed (Stress *self)
{
  for (guint i = 0; i < self->active->len; i++)
    {
      Channel *channel = g_ptr_array_index (self->active, i);

      if (channel->n_close == 0 && (channel->n_echoed < channel->n_posted || channel->returning))
        return FALSE;
    }
  return TRUE;
}

static gboolean
holders_done (Stress *self)
{
  for (guint i = 0; i < self->holders->len; i++)
    {
      HolderRef *holder = g_ptr_array_index (self->holders, i);

      if (holder->n_control_close == 0 || (holder->process != NULL && !holder->exited))
        return FALSE;
    }
  return TRUE;
}

static gboolean warmed_up;

static void
warm_up_exited (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!g_subprocess_wait_check_finish (G_SUBPROCESS (source), result, &error))
    g_error ("warm-up child: %s", error->message);
  *(gboolean *) user_data = TRUE;
}

static void
run_seed (guint32  seed,
          guint    n_steps,
          gboolean quiet)
{
  Stress stress = { .seed = seed };
  Stress *self = &stress;
  g_autoptr(GHashTable) base_fds = NULL;
  guint base_threads;
  gboolean stepped = FALSE;
  GSource *stepper, *waker;
  gint64 start = g_get_monotonic_time ();

  tolerate_drop_warnings ();

  current = self;
  if (!quiet)
    g_test_message ("seed %u: replay with: stress --seed %u", seed, seed);
  msg_wire_set_memfd_threshold (MEMFD_THRESHOLD);

  /* The first child and the first socket start threads that stay: the
   * I/O thread, GLib's worker (child watches). */
  if (!warmed_up)
    {
      g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
      g_autofree char *path = g_test_build_filename (G_TEST_BUILT, "stress", NULL);
      g_autoptr(MsgPortMain) port = msg_port_main_new_for_launcher (launcher, -1, NULL);
      g_autoptr(GSubprocess) process = g_subprocess_launcher_spawn (launcher, NULL, path, "--child", NULL);
      gboolean exited = FALSE;

      g_assert_nonnull (port);
      g_assert_nonnull (process);
      g_clear_object (&launcher);
      msg_port_main_close (port);
      g_subprocess_wait_check_async (process, NULL, warm_up_exited, &exited);
      msg_test_wait_until (NULL, exited);
      warmed_up = TRUE;
    }

  base_fds = list_fds ();
  base_threads = count_threads ();

  self->rand = g_rand_new_with_seed (seed);
  self->channels = g_ptr_array_new ();
  self->active = g_ptr_array_new ();
  self->holders = g_ptr_array_new ();
  self->max_kills = MIN (1 + n_steps / 4000, 32);  /* holder indices fit a guint64 */
  for (guint i = 0; i < N_WORKERS + N_CHILDREN; i++)
    holder_ref_new (self, i >= N_WORKERS);
  for (guint i = 0; i < N_CHANNELS; i++)
    channel_new (self);

  /* One action per iteration, in between the deliveries. */
  stepper = g_idle_source_new ();
  g_source_set_callback (stepper, step_cb, &stepped, NULL);
  g_source_attach (stepper, NULL);
  for (guint i = 0; i < n_steps; i++)
    {
      stepped = FALSE;
      while (!stepped)
        g_main_context_iteration (NULL, TRUE);
      step (self);
    }
  g_source_destroy (stepper);
  g_source_unref (stepper);

  /* Every channel still open has all its echoes; then it is closed. */
  msg_test_wait_until (NULL, all_echoed (self));
  for (guint i = 0; i < self->active->len; i++)
    {
      Channel *channel = g_ptr_array_index (self->active, i);

      if (channel->n_close == 0)
        {
          if (channel->n_echoed != channel->n_posted)
            stress_fail ("channel %u: %" G_GUINT64_FORMAT " echoes of %" G_GUINT64_FORMAT,
                         channel->id, channel->n_echoed, channel->n_posted);
          channel->cause = CAUSE_CLOSE;
          msg_port_main_close (channel->port1);
        }
    }
  msg_test_wait_until (NULL, all_ended (self));
  for (guint i = 0; i < self->channels->len; i++)
    check_channel (g_ptr_array_index (self->channels, i));

  /* The holders end. */
  for (guint i = 0; i < self->holders->len; i++)
    {
      HolderRef *holder = g_ptr_array_index (self->holders, i);

      msg_port_main_close (holder->control);
      if (holder->process != NULL)
        g_subprocess_wait_check_async (holder->process, NULL, child_exited, holder);
    }
  msg_test_wait_until (NULL, holders_done (self));
  for (guint i = 0; i < self->holders->len; i++)
    {
      HolderRef *holder = g_ptr_array_index (self->holders, i);

      if (holder->killed)
        {
          if (holder->exit_ok || holder->control_close_code != MSG_PORT_ERROR_PEER_GONE)
            stress_fail ("holder %u: killed, but exited cleanly or its port closed with %d",
                         i, holder->control_close_code);
        }
      else if (holder->process != NULL && !holder->exit_ok)
        stress_fail ("holder %u: the child failed", i);
      if (holder->worker != NULL)
        {
          msg_test_worker_invoke (holder->worker, worker_free_holder, holder);
          g_clear_pointer (&holder->worker, msg_test_worker_free);
        }
      g_signal_handlers_disconnect_by_data (holder->control, holder);
      g_clear_object (&holder->control);
      g_clear_object (&holder->process);
      g_free (holder);
    }
  for (guint i = 0; i < self->channels->len; i++)
    {
      Channel *channel = g_ptr_array_index (self->channels, i);

      g_signal_handlers_disconnect_by_data (channel->port1, channel);
      g_clear_object (&channel->port1);
      g_free (channel);
    }

  /* Back to the descriptors and threads of the start; the I/O thread
   * closes what it held a moment later, so wait for it. */
  waker = g_timeout_source_new (10);
  g_source_set_callback (waker, msg_test_wake, NULL, NULL);
  g_source_attach (waker, NULL);
  for (gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;;)
    {
      g_autoptr(GHashTable) fds = list_fds ();
      g_autofree char *leaked = new_fd (base_fds, fds);
      guint n_threads = count_threads ();

      if (leaked == NULL && n_threads == base_threads)
        break;
      if (g_get_monotonic_time () > deadline)
        stress_fail ("at the end, descriptor %s is new, and %u threads run, %u at the start",
                     leaked != NULL ? leaked : "(none)", n_threads, base_threads);
      g_main_context_iteration (NULL, TRUE);
    }
  g_source_destroy (waker);
  g_source_unref (waker);

  g_test_message ("seed %u: %u steps, %u channels, %" G_GUINT64_FORMAT " messages, %u moves, "
                  "%u kills in %.1f s", seed, n_steps, self->next_id, self->n_messages,
                  self->n_moves, self->n_kills, (g_get_monotonic_time () - start) / 1e6);
  g_ptr_array_unref (self->channels);
  g_ptr_array_unref (self->active);
  g_ptr_array_unref (self->holders);
  g_rand_free (self->rand);
  current = NULL;
}

static guint n_steps = DEFAULT_STEPS;

static void
test_stress_seed (gconstpointer data)
{
  g_test_summary ("Ports moving between threads and processes while messages flow, with "
                  "closes, drops and kills: exactly once, in order, one close each with "
                  "the right reason, nothing leaked");
  run_seed (GPOINTER_TO_UINT (data), n_steps, FALSE);
}

static void
test_stress_soak (gconstpointer data)
{
  gint64 end = g_get_monotonic_time () + GPOINTER_TO_UINT (data) * G_USEC_PER_SEC;
  guint n_seeds = 0;

  g_test_summary ("The stress with random seeds, one after the other, for as long as asked");
  while (g_get_monotonic_time () < end)
    {
      guint32 seed = g_random_int ();

      g_printerr ("# stress: seed %u (replay with: stress --seed %u)\n", seed, seed);
      run_seed (seed, n_steps, TRUE);
      n_seeds++;
    }
  g_test_message ("%u seeds", n_seeds);
}

/* GSignal keeps every handler, and every instance that has one, in global
 * GHashTables under its own GMutex, which ThreadSanitizer cannot see. A
 * table that grows or shrinks as holders and the main thread connect and
 * disconnect is realloc()ed by one thread after another, and TSan reports
 * that with g_realloc() as the only GLib function it shows: the library's
 * own arrays grow through it too (the endpoint's queue), so no suppression
 * may name it (docs/testing.md). So in a TSan build, before any thread
 * starts, this thread connects a handler to each of RESERVED_HANDLERS
 * objects, which stay: GLib 2.74 then holds both tables at 16384 slots as
 * long as they have between about 6,200 and 12,200 entries, far more than
 * a seed adds. */
#define RESERVED_HANDLERS 8000

#ifdef MSG_HAVE_TSAN
static void
reserved_notify (GObject    *object,
                 GParamSpec *pspec,
                 gpointer    user_data)
{
}
#endif

static GPtrArray *
reserve_signal_tables (void)
{
  GPtrArray *objects = g_ptr_array_new_with_free_func (g_object_unref);

#ifdef MSG_HAVE_TSAN
  for (guint i = 0; i < RESERVED_HANDLERS; i++)
    {
      GObject *object = g_object_new (G_TYPE_OBJECT, NULL);

      g_signal_connect (object, "notify", G_CALLBACK (reserved_notify), NULL);
      g_ptr_array_add (objects, object);
    }
#endif
  return objects;
}

/* Valgrind makes everything 20 to 50 times slower. */
static gboolean
under_valgrind (void)
{
  g_autofree char *maps = NULL;

  return g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL) &&
         strstr (maps, "vgpreload") != NULL;
}

int
main (int    argc,
      char **argv)
{
  const char *soak = g_getenv ("MSG_STRESS_SECONDS");
  guint seconds = soak != NULL ? atoi (soak) : 0;
  gint64 seed = -1;
  GSource *keep_list;
  GPtrArray *reserved;
  int ret;

  if (argc > 1 && strcmp (argv[1], "--child") == 0)
    {
      tolerate_drop_warnings ();
      return child_main ();
    }

  /* Our options, before GTest's. */
  for (int i = 1; i < argc; i++)
    {
      int taken = 0;

      if (i + 1 < argc && strcmp (argv[i], "--seed") == 0)
        seed = g_ascii_strtoll (argv[i + 1], NULL, 10), taken = 2;
      else if (i + 1 < argc && strcmp (argv[i], "--seconds") == 0)
        seconds = atoi (argv[i + 1]), taken = 2;
      else if (i + 1 < argc && strcmp (argv[i], "--steps") == 0)
        n_steps = atoi (argv[i + 1]), taken = 2;
      if (taken > 0)
        {
          memmove (&argv[i], &argv[i + taken], (argc - i - taken + 1) * sizeof (char *));
          argc -= taken;
          i--;
        }
    }

  g_test_init (&argc, &argv, NULL);
  /* The children's waits return through GLib's worker thread: see
   * msg_test_keep_source_list(). And a sanitizer's symbolizer, started by
   * the first report or suppression it matches, would be new descriptors
   * at the end of a seed. */
  keep_list = msg_test_keep_source_list (NULL);
  msg_test_start_symbolizer ();
  reserved = reserve_signal_tables ();

  if (seed >= 0)
    g_test_add_data_func ("/stress/seed", GUINT_TO_POINTER ((guint32) seed), test_stress_seed);
  else if (seconds > 0)
    g_test_add_data_func ("/stress/soak", GUINT_TO_POINTER (seconds), test_stress_soak);
  else if (under_valgrind ())
    {
      n_steps = 300;
      g_test_add_data_func ("/stress/seed/1", GUINT_TO_POINTER (1), test_stress_seed);
    }
  else
    for (guint32 i = 1; i <= 4; i++)
      {
        g_autofree char *path = g_strdup_printf ("/stress/seed/%u", i);

        g_test_add_data_func (path, GUINT_TO_POINTER (i), test_stress_seed);
      }

  ret = g_test_run ();
  g_ptr_array_unref (reserved);
  g_source_destroy (keep_list);
  g_source_unref (keep_list);
  return ret;
}
