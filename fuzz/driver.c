/* driver.c: replays fuzz inputs without libFuzzer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each argument is a file or a folder of files; each file is one input
 * (GLib's fuzzing/driver.c does the same). Used as a plain test over the
 * corpus, so the targets build and the corpus keeps passing.
 */

#include <stdint.h>

#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

static guint n_inputs;

static void
run_file (const char *path)
{
  g_autofree char *contents = NULL;
  gsize size;
  g_autoptr(GError) error = NULL;

  if (!g_file_get_contents (path, &contents, &size, &error))
    g_error ("%s", error->message);
  LLVMFuzzerTestOneInput ((const uint8_t *) contents, size);
  n_inputs++;
}

int
main (int    argc,
      char **argv)
{
  for (int i = 1; i < argc; i++)
    {
      if (g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          g_autoptr(GDir) dir = g_dir_open (argv[i], 0, NULL);
          const char *name;

          while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
            {
              g_autofree char *path = g_build_filename (argv[i], name, NULL);

              run_file (path);
            }
        }
      else
        run_file (argv[i]);
    }

  if (n_inputs == 0)
    g_error ("no inputs");
  g_print ("1..1\nok 1 replayed %u inputs\n", n_inputs);
  return 0;
}
