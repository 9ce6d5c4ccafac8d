/* msgport-version-macros.h: symbol visibility and availability macros
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined (MSG_INSIDE) && !defined (MSG_COMPILATION)
# error "Only <msgport-glib.h> can be included directly."
#endif

#include <glib.h>

#include "msgport-version.h"

#ifndef _MSG_EXTERN
# if defined (MSG_COMPILATION) && defined (__GNUC__)
#  define _MSG_EXTERN __attribute__((visibility ("default"))) extern
# else
#  define _MSG_EXTERN extern
# endif
#endif

#define MSG_VERSION_1_0 (G_ENCODE_VERSION (1, 0))
#define MSG_VERSION_1_2 (G_ENCODE_VERSION (1, 2))

#define MSG_VERSION_CUR_STABLE (G_ENCODE_VERSION (MSG_MAJOR_VERSION, MSG_MINOR_VERSION))

#define MSG_AVAILABLE_IN_ALL _MSG_EXTERN
#define MSG_AVAILABLE_IN_1_0 _MSG_EXTERN
/* API added in the 1.1 development series, stable from 1.2 on. */
#define MSG_AVAILABLE_IN_1_2 _MSG_EXTERN
