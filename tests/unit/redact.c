/* redact.c: the registry of values never shown, and the scrubber. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

static int failures, checks;

static void expect_with(char *(*copy)(const char *, size_t, size_t *),
                        const char *in, const char *want)
{
  size_t n;
  char *out = copy(in, strlen(in), &n);
  const char *got = out ? out : in;

  checks++;

  if (strcmp(got, want) != 0 || (out && n != strlen(want))) {
    printf("FAILED: \"%s\" gave \"%s\", want \"%s\"\n", in, got, want);
    failures++;
  }
  free(out);
}

static void expect(const char *in, const char *want)
{
  expect_with(redact_copy, in, want);
}

/* redact_json_copy: the marks fitted to JSON's tokens. */
static void expect_json(const char *in, const char *want)
{
  expect_with(redact_json_copy, in, want);
}

int main(void)
{
  expect("nothing registered s3cr3t", "nothing registered s3cr3t");
  redact_add("s3cr3t", 6);
  redact_add("abc", 3); /* too short: ignored */
  redact_add("s3cr3t-longer", 13);
  redact_add("s3cr3t", 6); /* again: ignored */
  expect("plain text", "plain text");
  expect("s3cr3t", "[redacted]");
  expect("pw=s3cr3t;", "pw=[redacted];");
  expect("a s3cr3t b s3cr3t c", "a [redacted] b [redacted] c");
  expect("x s3cr3t-longer y", "x [redacted] y");
  expect("abc abc", "abc abc");
  expect("s3cr3s3cr3t", "s3cr3[redacted]");
  redact_clear();
  expect("s3cr3t", "s3cr3t");

  /* A value as it shows inside JSON or a quoted text field. */
  redact_add("p@ss word/'\\#", 13);
  redact_add("ab\"cd\tef", 8);
  expect("{\"p\":\"p@ss word/'\\\\#\"}", "{\"p\":\"[redacted]\"}");
  expect("raw p@ss word/'\\# here", "raw [redacted] here");
  expect("x=\"ab\\\"cd\\tef\"", "x=\"[redacted]\"");
  /* Inside a JSON text that a result encodes again: escaped twice. */
  expect("{\"e\":\"{\\\"p\\\":\\\"p@ss word/'\\\\\\\\#\\\"}\"}",
         "{\"e\":\"{\\\"p\\\":\\\"[redacted]\\\"}\"}");
  expect("ab\\\\\\\"cd\\\\tef", "[redacted]");

  /* Values that overlap or touch are hidden whole, not the first only. */
  redact_clear();
  redact_add("AAAAsecret", 10);
  redact_add("secretBBBB", 10);
  expect("x AAAAsecretBBBB y", "x [redacted] y");
  expect("AAAAsecretAAAAsecret", "[redacted]");
  expect("secretBBBBsecretBBBB.", "[redacted].");

  /* Backspace and form feed as json.c writes them: \b and \f. */
  redact_clear();
  redact_add("back\bspace\fform1", 17);
  expect("{\"x\":\"back\\bspace\\fform1\"}", "{\"x\":\"[redacted]\"}");
  expect("\"back\\\\bspace\\\\fform1\"", "\"[redacted]\"");

  /* A value with NUL bytes, cut at a NUL by a C string: each part. */
  redact_clear();
  redact_add("ABCDEFGHIJ\0KLMNOPQR", 19);
  expect("value ABCDEFGHIJ", "value [redacted]");
  expect("tail KLMNOPQR.", "tail [redacted].");

  /* No limit on how many: a warm process that met thousands of secret
   * versions hides the first and the last (each value here also
   * registers escaped forms). */
  {
    char value[32], line[64], want[64];
    int i, ok = 1;

    redact_clear();
    for (i = 0; i < 3000; i++) {
      snprintf(value, sizeof value, "pw-%04d-\"quoted\"", i);
      if (redact_add(value, strlen(value)) != 0)
        ok = 0;
    }
    checks++;
    if (!ok) {
      printf("FAIL redact_add of 3000 values\n");
      failures++;
    }
    for (i = 0; i < 3000; i += 999) {
      snprintf(line, sizeof line, "a pw-%04d-\"quoted\" b", i);
      snprintf(want, sizeof want, "a [redacted] b");
      expect(line, want);
    }
    expect("a pw-2999-\"quoted\" b", "a [redacted] b");
    expect("{\"p\":\"pw-2999-\\\"quoted\\\"\"}", "{\"p\":\"[redacted]\"}");
  }
  /* In JSON text: a PIN inside a number becomes a string; a value that
   * ends in a backslash or a quote takes neither the escape nor the
   * closing quote with it; one across tokens hides its part of each. */
  redact_clear();
  redact_add("20461", 5);
  redact_add("ends-in\\", 8);
  redact_add("ends-in\"", 8);
  redact_add("caf\xc3\xa9-latte", 11);
  expect("{\"n\":20461}", "{\"n\":[redacted]}");
  expect_json("{\"n\":20461}", "{\"n\":\"[redacted]\"}");
  expect_json("[1204610,-1.20461e5,20461]",
              "[\"[redacted]\",\"[redacted]\",\"[redacted]\"]");
  expect_json("{\"k\":\"ends-in\\\\\"}", "{\"k\":\"[redacted]\"}");
  expect_json("{\"k\":\"ends-in\\\"\"}", "{\"k\":\"[redacted]\"}");
  expect_json("[\"ends-in\\\\tab\"]", "[\"[redacted]tab\"]");
  /* The raw form ends in a backslash: its match stops inside the escape
   * \" and is widened to the whole escape. */
  expect_json("[\"ends-in\\\"x\"]", "[\"[redacted]x\"]");
  expect("[\"ends-in\\\"x\"]", "[\"[redacted]x\"]");
  expect_json("{\"20461\":true,\"x\":\"a20461b\"}",
              "{\"[redacted]\":true,\"x\":\"a[redacted]b\"}");
  /* A match that starts inside a character or an escape takes all of
   * it. */
  redact_clear();
  redact_add("\xa9-latte", 7);
  redact_add("u00e9xyz", 8);
  expect_json("\"caf\xc3\xa9-latte\"", "\"caf[redacted]\"");
  expect_json("\"x\\u00e9xyz\"", "\"x[redacted]\"");
  expect_json("\"\\ud83d\\ude00 u00e9xyz\"",
              "\"\\ud83d\\ude00 [redacted]\"");
  redact_add("de00abcd", 8);
  expect_json("\"\\ud83d\\ude00abcd\"", "\"[redacted]\"");
  /* Across tokens: each part, the punctuation shown. */
  redact_clear();
  redact_add("a\",\"b1", 6);
  expect_json("[\"a\",\"b1\"]", "[\"[redacted]\",\"[redacted]\"]");
  redact_add("1, 2, 3", 7);
  expect_json("[1, 2, 3]",
              "[\"[redacted]\", \"[redacted]\", \"[redacted]\"]");
  /* Not JSON: as redact_copy. */
  expect_json("oops a\",\"b1 {", "oops [redacted] {");
  expect_json("[\"unterminated a\",\"b1", "[\"unterminated [redacted]");
  expect_json("[nulls, a\",\"b1]", "[nulls, [redacted]]");

  /* The two searches agree: a text short enough for the index and the
   * same text repeated past what the index takes for few forms. */
  {
    static const char piece[] = "x p@ss-one y {\"k\":\"tw\\\"o-2\"} 20461 ";
    char *longer = malloc(sizeof piece * 400), *want;
    size_t i, one_len;
    char *one;

    redact_clear();
    redact_add("p@ss-one", 8);
    redact_add("tw\"o-2", 6);
    redact_add("20461", 5);
    one = redact_copy(piece, strlen(piece), &one_len);
    want = malloc(one_len * 400 + 1);
    checks++;
    if (!longer || !one || !want) {
      printf("FAILED: no memory or no hit in \"%s\"\n", piece);
      failures++;
    } else {
      for (i = 0; i < 400; i++) {
        memcpy(longer + i * strlen(piece), piece, strlen(piece));
        memcpy(want + i * one_len, one, one_len);
      }
      longer[400 * strlen(piece)] = '\0';
      want[400 * one_len] = '\0';
      expect(longer, want);
    }
    free(one);
    free(want);
    free(longer);
  }

  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
