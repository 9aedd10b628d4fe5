/* A minimal stand-in for <criterion/criterion.h>, used only by `make test-tsan`.
 *
 * Criterion cannot start under ThreadSanitizer: BoxFort maps its arena at
 * fixed addresses inside the range TSan reserves for its shadow (Snaipe/
 * Criterion#274). With -Itests/tsan first on the include path the test
 * sources get this header instead, and tests/tsan/runner.c supplies main().
 *
 * What it covers: Test() and TestSuite() with Criterion's designated options
 * (.init, .fini, .signal, .exit_code, .disabled, .description, .timeout,
 * .data), the classic assertion macros (cr_assert*, cr_expect*, each with an
 * optional printf-style message), cr_assert_fail/cr_expect_fail, cr_fail/
 * cr_fatal, cr_skip_test and cr_log*. A failed cr_assert* ends the test
 * process at once (from any thread); a failed cr_expect* marks the test
 * failed and carries on. .fini is not run after a failed cr_assert*. */
#ifndef WEFT_TSAN_CRITERION_SHIM_H
#define WEFT_TSAN_CRITERION_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifdef __cplusplus
#error "the TSan Criterion shim is C only"
#endif

/* ------------------------------------------------------------ registration */

struct criterion_test_extra_data {
    int sentinel_; /* lets `{ .sentinel_ = 0, __VA_ARGS__ }` take no options */
    void (*init)(void);
    void (*fini)(void);
    int signal;     /* the test passes only if it dies of this signal */
    int exit_code;  /* the test passes only if it exits with this status */
    bool disabled;  /* reported as skipped, never run */
    const char *description;
    double timeout; /* seconds of wall-clock time; 0: none */
    void *data;
};

struct cr_shim_test {
    const char *suite, *name, *file;
    unsigned line;
    void (*fn)(void);
    const struct criterion_test_extra_data *extra;
    struct cr_shim_test *next;
};

struct cr_shim_suite {
    const char *name;
    const struct criterion_test_extra_data *extra;
    struct cr_shim_suite *next;
};

void cr_shim_register_test_(struct cr_shim_test *t);
void cr_shim_register_suite_(struct cr_shim_suite *s);

#define CR_SHIM_ID_(Suite, Name, What) Suite##_##Name##_##What

#define Test(Suite, Name, ...)                                                                     \
    static void CR_SHIM_ID_(Suite, Name, impl)(void);                                              \
    static const struct criterion_test_extra_data CR_SHIM_ID_(Suite, Name, extra) = {              \
        .sentinel_ = 0, __VA_ARGS__};                                                              \
    static struct cr_shim_test CR_SHIM_ID_(Suite, Name, meta) = {                                  \
        #Suite, #Name, __FILE__, __LINE__, CR_SHIM_ID_(Suite, Name, impl),                         \
        &CR_SHIM_ID_(Suite, Name, extra), NULL};                                                   \
    __attribute__((constructor)) static void CR_SHIM_ID_(Suite, Name, reg)(void)                   \
    {                                                                                              \
        cr_shim_register_test_(&CR_SHIM_ID_(Suite, Name, meta));                                   \
    }                                                                                              \
    static void CR_SHIM_ID_(Suite, Name, impl)(void)

/* Suite-wide defaults: a test's own option wins where it sets one. */
#define TestSuite(Name, ...)                                                                       \
    static const struct criterion_test_extra_data cr_shim_suite_##Name##_extra = {                 \
        .sentinel_ = 0, __VA_ARGS__};                                                              \
    static struct cr_shim_suite cr_shim_suite_##Name##_meta = {#Name,                              \
                                                               &cr_shim_suite_##Name##_extra, NULL}; \
    __attribute__((constructor)) static void cr_shim_suite_##Name##_reg(void)                      \
    {                                                                                              \
        cr_shim_register_suite_(&cr_shim_suite_##Name##_meta);                                     \
    }                                                                                              \
    struct cr_shim_swallow_semicolon_

/* ------------------------------------------------------------ failure reporting */

/* has_msg is 1 when a printf-style format (then its arguments) follows; an
 * empty message falls back to dflt, as in Criterion. detail may be NULL. */
__attribute__((noreturn)) void cr_shim_abort_(const char *file, unsigned line, const char *dflt,
                                              const char *detail, int has_msg, ...);
void cr_shim_expect_(const char *file, unsigned line, const char *dflt, const char *detail,
                     int has_msg, ...);
__attribute__((noreturn)) void cr_shim_skip_(const char *file, unsigned line, int has_msg, ...);

/* Never called: lets the compiler check a user message against its arguments.
 * An empty message ("") is allowed, as in Criterion. */
static inline __attribute__((format(printf, 1, 2))) void cr_shim_fmtcheck_(const char *fmt, ...)
{
    (void)fmt;
}
#define CR_SHIM_FMTCHECK_(...)                                                                     \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wformat-zero-length\"")   \
        __VA_OPT__(if (0) cr_shim_fmtcheck_(__VA_ARGS__);) _Pragma("GCC diagnostic pop")

#define CR_SHIM_CHECK_(Fail, Cond, Dflt, ...)                                                      \
    do {                                                                                           \
        if (!(Cond)) {                                                                             \
            CR_SHIM_FMTCHECK_(__VA_ARGS__)                                                         \
            Fail(__FILE__, __LINE__, Dflt, NULL, 0 __VA_OPT__(+1, __VA_ARGS__));                   \
        }                                                                                          \
    } while (0)

#define CR_SHIM_EXPR_(Text) "The expression " Text " is false."

/* String comparisons evaluate each operand once and show both values. */
#define CR_SHIM_STR_(Fail, A, Op, B, ...)                                                          \
    do {                                                                                           \
        const char *cr_a_ = (A), *cr_b_ = (B);                                                     \
        if (!(cr_a_ && cr_b_ && strcmp(cr_a_, cr_b_) Op 0)) {                                      \
            char cr_d_[512];                                                                       \
            cr_shim_strdetail_(cr_d_, sizeof cr_d_, cr_a_, cr_b_);                                 \
            CR_SHIM_FMTCHECK_(__VA_ARGS__)                                                         \
            Fail(__FILE__, __LINE__, CR_SHIM_EXPR_("(as strings) (" #A ") " #Op " (" #B ")"),      \
                 cr_d_, 0 __VA_OPT__(+1, __VA_ARGS__));                                            \
        }                                                                                          \
    } while (0)

void cr_shim_strdetail_(char *buf, size_t len, const char *a, const char *b);

#define CR_SHIM_STR_EMPTY_(Fail, S, Empty, ...)                                                    \
    do {                                                                                           \
        const char *cr_s_ = (S);                                                                   \
        CR_SHIM_CHECK_(Fail, cr_s_ != NULL && (cr_s_[0] == '\0') == (Empty),                       \
                       Empty ? CR_SHIM_EXPR_("(" #S ")[0] == '\\0'")                               \
                             : CR_SHIM_EXPR_("(" #S ")[0] != '\\0'"),                              \
                       __VA_ARGS__);                                                               \
    } while (0)

/* ------------------------------------------------------------ cr_assert* (fatal) */

#define cr_assert(Cond, ...)                                                                       \
    CR_SHIM_CHECK_(cr_shim_abort_, Cond, CR_SHIM_EXPR_("(" #Cond ")"), __VA_ARGS__)
#define cr_assert_not(Cond, ...)                                                                   \
    CR_SHIM_CHECK_(cr_shim_abort_, !(Cond), CR_SHIM_EXPR_("!(" #Cond ")"), __VA_ARGS__)
#define cr_assert_fail(...)                                                                        \
    CR_SHIM_CHECK_(cr_shim_abort_, 0, "The conditions for this assertion were not met.",          \
                   __VA_ARGS__)
#define CR_SHIM_OP_(Fail, A, Op, B, ...)                                                           \
    CR_SHIM_CHECK_(Fail, (A)Op(B), CR_SHIM_EXPR_("(" #A ") " #Op " (" #B ")"), __VA_ARGS__)
#define cr_assert_eq(A, B, ...)  CR_SHIM_OP_(cr_shim_abort_, A, ==, B, __VA_ARGS__)
#define cr_assert_neq(A, B, ...) CR_SHIM_OP_(cr_shim_abort_, A, !=, B, __VA_ARGS__)
#define cr_assert_lt(A, B, ...)  CR_SHIM_OP_(cr_shim_abort_, A, <, B, __VA_ARGS__)
#define cr_assert_leq(A, B, ...) CR_SHIM_OP_(cr_shim_abort_, A, <=, B, __VA_ARGS__)
#define cr_assert_gt(A, B, ...)  CR_SHIM_OP_(cr_shim_abort_, A, >, B, __VA_ARGS__)
#define cr_assert_geq(A, B, ...) CR_SHIM_OP_(cr_shim_abort_, A, >=, B, __VA_ARGS__)
#define cr_assert_null(P, ...)                                                                     \
    CR_SHIM_CHECK_(cr_shim_abort_, (P) == NULL, CR_SHIM_EXPR_("(" #P ") == NULL"), __VA_ARGS__)
#define cr_assert_not_null(P, ...)                                                                 \
    CR_SHIM_CHECK_(cr_shim_abort_, (P) != NULL, CR_SHIM_EXPR_("(" #P ") != NULL"), __VA_ARGS__)
#define cr_assert_float_eq(A, B, Eps, ...)                                                         \
    CR_SHIM_CHECK_(cr_shim_abort_, (B) - (A) <= (Eps) && (A) - (B) <= (Eps),                       \
                   CR_SHIM_EXPR_("(" #A ") == (" #B ") within " #Eps), __VA_ARGS__)
#define cr_assert_float_neq(A, B, Eps, ...)                                                        \
    CR_SHIM_CHECK_(cr_shim_abort_, (B) - (A) > (Eps) || (A) - (B) > (Eps),                         \
                   CR_SHIM_EXPR_("(" #A ") != (" #B ") beyond " #Eps), __VA_ARGS__)
#define cr_assert_arr_eq(A, B, Size, ...)                                                          \
    CR_SHIM_CHECK_(cr_shim_abort_, memcmp((A), (B), (Size)) == 0,                                  \
                   CR_SHIM_EXPR_("(" #A ")[0.." #Size "] == (" #B ")[0.." #Size "]"), __VA_ARGS__)
#define cr_assert_arr_neq(A, B, Size, ...)                                                         \
    CR_SHIM_CHECK_(cr_shim_abort_, memcmp((A), (B), (Size)) != 0,                                  \
                   CR_SHIM_EXPR_("(" #A ")[0.." #Size "] != (" #B ")[0.." #Size "]"), __VA_ARGS__)
#define cr_assert_str_eq(A, B, ...)  CR_SHIM_STR_(cr_shim_abort_, A, ==, B, __VA_ARGS__)
#define cr_assert_str_neq(A, B, ...) CR_SHIM_STR_(cr_shim_abort_, A, !=, B, __VA_ARGS__)
#define cr_assert_str_lt(A, B, ...)  CR_SHIM_STR_(cr_shim_abort_, A, <, B, __VA_ARGS__)
#define cr_assert_str_leq(A, B, ...) CR_SHIM_STR_(cr_shim_abort_, A, <=, B, __VA_ARGS__)
#define cr_assert_str_gt(A, B, ...)  CR_SHIM_STR_(cr_shim_abort_, A, >, B, __VA_ARGS__)
#define cr_assert_str_geq(A, B, ...) CR_SHIM_STR_(cr_shim_abort_, A, >=, B, __VA_ARGS__)
#define cr_assert_str_empty(S, ...)  CR_SHIM_STR_EMPTY_(cr_shim_abort_, S, 1, __VA_ARGS__)
#define cr_assert_str_not_empty(S, ...) CR_SHIM_STR_EMPTY_(cr_shim_abort_, S, 0, __VA_ARGS__)

/* ------------------------------------------------------------ cr_expect* (non-fatal) */

#define cr_expect(Cond, ...)                                                                       \
    CR_SHIM_CHECK_(cr_shim_expect_, Cond, CR_SHIM_EXPR_("(" #Cond ")"), __VA_ARGS__)
#define cr_expect_not(Cond, ...)                                                                   \
    CR_SHIM_CHECK_(cr_shim_expect_, !(Cond), CR_SHIM_EXPR_("!(" #Cond ")"), __VA_ARGS__)
#define cr_expect_fail(...)                                                                        \
    CR_SHIM_CHECK_(cr_shim_expect_, 0, "The conditions for this assertion were not met.",         \
                   __VA_ARGS__)
#define cr_expect_eq(A, B, ...)  CR_SHIM_OP_(cr_shim_expect_, A, ==, B, __VA_ARGS__)
#define cr_expect_neq(A, B, ...) CR_SHIM_OP_(cr_shim_expect_, A, !=, B, __VA_ARGS__)
#define cr_expect_lt(A, B, ...)  CR_SHIM_OP_(cr_shim_expect_, A, <, B, __VA_ARGS__)
#define cr_expect_leq(A, B, ...) CR_SHIM_OP_(cr_shim_expect_, A, <=, B, __VA_ARGS__)
#define cr_expect_gt(A, B, ...)  CR_SHIM_OP_(cr_shim_expect_, A, >, B, __VA_ARGS__)
#define cr_expect_geq(A, B, ...) CR_SHIM_OP_(cr_shim_expect_, A, >=, B, __VA_ARGS__)
#define cr_expect_null(P, ...)                                                                     \
    CR_SHIM_CHECK_(cr_shim_expect_, (P) == NULL, CR_SHIM_EXPR_("(" #P ") == NULL"), __VA_ARGS__)
#define cr_expect_not_null(P, ...)                                                                 \
    CR_SHIM_CHECK_(cr_shim_expect_, (P) != NULL, CR_SHIM_EXPR_("(" #P ") != NULL"), __VA_ARGS__)
#define cr_expect_float_eq(A, B, Eps, ...)                                                         \
    CR_SHIM_CHECK_(cr_shim_expect_, (B) - (A) <= (Eps) && (A) - (B) <= (Eps),                      \
                   CR_SHIM_EXPR_("(" #A ") == (" #B ") within " #Eps), __VA_ARGS__)
#define cr_expect_float_neq(A, B, Eps, ...)                                                        \
    CR_SHIM_CHECK_(cr_shim_expect_, (B) - (A) > (Eps) || (A) - (B) > (Eps),                        \
                   CR_SHIM_EXPR_("(" #A ") != (" #B ") beyond " #Eps), __VA_ARGS__)
#define cr_expect_arr_eq(A, B, Size, ...)                                                          \
    CR_SHIM_CHECK_(cr_shim_expect_, memcmp((A), (B), (Size)) == 0,                                 \
                   CR_SHIM_EXPR_("(" #A ")[0.." #Size "] == (" #B ")[0.." #Size "]"), __VA_ARGS__)
#define cr_expect_arr_neq(A, B, Size, ...)                                                         \
    CR_SHIM_CHECK_(cr_shim_expect_, memcmp((A), (B), (Size)) != 0,                                 \
                   CR_SHIM_EXPR_("(" #A ")[0.." #Size "] != (" #B ")[0.." #Size "]"), __VA_ARGS__)
#define cr_expect_str_eq(A, B, ...)  CR_SHIM_STR_(cr_shim_expect_, A, ==, B, __VA_ARGS__)
#define cr_expect_str_neq(A, B, ...) CR_SHIM_STR_(cr_shim_expect_, A, !=, B, __VA_ARGS__)
#define cr_expect_str_lt(A, B, ...)  CR_SHIM_STR_(cr_shim_expect_, A, <, B, __VA_ARGS__)
#define cr_expect_str_leq(A, B, ...) CR_SHIM_STR_(cr_shim_expect_, A, <=, B, __VA_ARGS__)
#define cr_expect_str_gt(A, B, ...)  CR_SHIM_STR_(cr_shim_expect_, A, >, B, __VA_ARGS__)
#define cr_expect_str_geq(A, B, ...) CR_SHIM_STR_(cr_shim_expect_, A, >=, B, __VA_ARGS__)
#define cr_expect_str_empty(S, ...)  CR_SHIM_STR_EMPTY_(cr_shim_expect_, S, 1, __VA_ARGS__)
#define cr_expect_str_not_empty(S, ...) CR_SHIM_STR_EMPTY_(cr_shim_expect_, S, 0, __VA_ARGS__)

/* Criterion's newer spellings (criterion/new/assert.h): fail and go on / stop. */
#define cr_fail(...)  cr_expect_fail(__VA_ARGS__)
#define cr_fatal(...) cr_assert_fail(__VA_ARGS__)

/* ------------------------------------------------------------ skipping, logging */

#define cr_skip_test(...)                                                                          \
    do {                                                                                           \
        CR_SHIM_FMTCHECK_(__VA_ARGS__)                                                             \
        cr_shim_skip_(__FILE__, __LINE__, 0 __VA_OPT__(+1, __VA_ARGS__));                          \
    } while (0)
#define cr_skip(...) cr_skip_test(__VA_ARGS__)

enum criterion_severity { CR_LOG_INFO = 1, CR_LOG_WARNING = 2, CR_LOG_ERROR = 3 };

__attribute__((format(printf, 2, 3))) void cr_log(enum criterion_severity level, const char *fmt,
                                                  ...);
#define cr_log_info(...)  cr_log(CR_LOG_INFO, __VA_ARGS__)
#define cr_log_warn(...)  cr_log(CR_LOG_WARNING, __VA_ARGS__)
#define cr_log_error(...) cr_log(CR_LOG_ERROR, __VA_ARGS__)

#endif
