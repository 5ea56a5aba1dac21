/* Test plugin: a valid shared object that forgot to export pb_plugin_entry. */
#include <plugboard.h>
PB_EXPORT int pb_test_not_the_entry_point(void);
PB_EXPORT int pb_test_not_the_entry_point(void) { return 42; }
