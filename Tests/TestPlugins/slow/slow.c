/* Test plugin "slow": the recorder under another name, for tests that need a plugin
 * that falls behind (config `delay_us` sleeps after each batch) beside a fast one. */
#define RECORDER_NAME "slow"
#include "../recorder/recorder.c"
