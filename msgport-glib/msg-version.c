/* msg-version.c: run-time version checks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "config.h"

#include "msg-version.h"

/**
 * msg_get_major_version:
 *
 * Returns the major version of the msgport-glib library loaded at run time,
 * which may differ from %MSG_MAJOR_VERSION, the one compiled against.
 *
 * Returns: the major version
 * Since: 1.0
 */
guint
msg_get_major_version (void)
{
  return MSG_MAJOR_VERSION;
}

/**
 * msg_get_minor_version:
 *
 * Returns the minor version of the msgport-glib library loaded at run time.
 *
 * Returns: the minor version
 * Since: 1.0
 */
guint
msg_get_minor_version (void)
{
  return MSG_MINOR_VERSION;
}

/**
 * msg_get_micro_version:
 *
 * Returns the micro version of the msgport-glib library loaded at run time.
 *
 * Returns: the micro version
 * Since: 1.0
 */
guint
msg_get_micro_version (void)
{
  return MSG_MICRO_VERSION;
}

/**
 * msg_check_version:
 * @required_major: the required major version
 * @required_minor: the required minor version
 * @required_micro: the required micro version
 *
 * Checks that the msgport-glib library in use at run time is compatible
 * with the given version: the same major version and at least the given
 * minor and micro versions.
 *
 * Returns: (nullable): %NULL if the library is compatible, or a string
 *   describing the mismatch, owned by the library
 * Since: 1.0
 */
const char *
msg_check_version (guint required_major,
                   guint required_minor,
                   guint required_micro)
{
  if (required_major > MSG_MAJOR_VERSION)
    return "msgport-glib version too old (major mismatch)";
  if (required_major < MSG_MAJOR_VERSION)
    return "msgport-glib version too new (major mismatch)";
  if (required_minor > MSG_MINOR_VERSION)
    return "msgport-glib version too old (minor mismatch)";
  if (required_minor == MSG_MINOR_VERSION && required_micro > MSG_MICRO_VERSION)
    return "msgport-glib version too old (micro mismatch)";
  return NULL;
}
