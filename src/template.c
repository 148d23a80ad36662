/* template.c: the deploy template for a jobs folder, which
 * `jobhost template` (cli_template.c) prints.
 *
 * Every job is checked first, as `jobhost check` does, so a template is
 * never written for a job that would fail to load or whose schedule
 * EventBridge would refuse. Then each job's spec is read for what the
 * deployment needs: its schedule, the secret it connects with, its
 * timeout and its heap limit. What comes out is one JSON document:
 *
 *   JobsFunction           the function: provided.al2023 on the build's
 *                          architecture, memory from the largest heap
 *                          limit, timeout from the longest job
 *   JobsRole               (CloudFormation) its role: logs, VPC network
 *                          interfaces, the dead-letter queue, and
 *                          secretsmanager:GetSecretValue on exactly the
 *                          secrets the jobs name (SAM builds the role
 *                          from the function's Policies instead)
 *   JobsLogGroup           where the records go, with a retention
 *   JobsDeadLetterQueue    SQS: invocations that failed every retry, and
 *                          events EventBridge could not deliver
 *   Schedule<Job>          one EventBridge rule per scheduled job, its
 *                          expression exactly as the job declares it, its
 *                          input the constant {"job":"NAME"}
 *   Invoke<Job>            the permission for that rule to invoke
 *
 * VPC subnets and security groups are parameters, so one template serves
 * every environment; so is the code: the zip in S3 (CodeBucket, CodeKey)
 * or, when CodeBucket is empty, the image in ImageUri. JSON is valid
 * CloudFormation and SAM input, and writing it needs no escaping rules
 * beyond JSON's own. */
#include "template.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "clock.h"
#include "db.h"
#include "host.h"
#include "job.h"
#include "log.h"

/* Lambda's bounds: memory in MB, timeout in seconds. */
#define LAMBDA_MEMORY_MIN 128
#define LAMBDA_MEMORY_MAX 10240
#define LAMBDA_TIMEOUT_MAX 900

/* Memory the process needs beside a job's Lua heap: the binary and its
 * libraries, libpq and TLS buffers, the result's JSON copies. */
#define MEMORY_HEADROOM_MB 128

/* Seconds the function outlives its longest job, so the job's own
 * timeout strikes first and is reported as Job.Timeout, transaction
 * rolled back, instead of Lambda killing the process. */
#define TIMEOUT_MARGIN_S 10

#define JW_MAX_DEPTH 32

/* ---- a small pretty-printing JSON writer ------------------------------ */

/* Writes JSON into a growing buffer, two spaces an indent. A container
 * opened "flat" is written on one line with its contents ({"Ref": "X"}),
 * which keeps the many small intrinsic functions of a template readable.
 * Running out of memory is sticky: writing goes on as a no-op and the
 * caller checks oom once at the end. */
typedef struct {
  char *text;
  size_t len;
  size_t cap;
  int oom;
  int depth;                /* containers open */
  int count[JW_MAX_DEPTH];  /* items written in each open container */
  int flat[JW_MAX_DEPTH];   /* whether it is written on one line */
} jw;

static void jw_put(jw *w, const char *s, size_t n)
{
  if (w->oom)
    return;
  if (w->len + n + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 16384;
    char *grown;

    while (cap < w->len + n + 1)
      cap *= 2;
    grown = realloc(w->text, cap);
    if (!grown) {
      w->oom = 1;
      return;
    }
    w->text = grown;
    w->cap = cap;
  }
  memcpy(w->text + w->len, s, n);
  w->len += n;
  w->text[w->len] = '\0';
}

static void jw_puts(jw *w, const char *s)
{
  jw_put(w, s, strlen(s));
}

static void jw_string(jw *w, const char *s)
{
  const unsigned char *p;
  char esc[8];

  jw_put(w, "\"", 1);
  for (p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      jw_put(w, esc, 2);
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      jw_put(w, esc, 6);
    } else {
      jw_put(w, (const char *)p, 1);
    }
  }
  jw_put(w, "\"", 1);
}

/* Starts an item of the innermost container: the separator, the line
 * break and indent unless flat, and "key": when key is not NULL. */
static void jw_item(jw *w, const char *key)
{
  int d = w->depth;
  int i;

  if (d == 0)
    return;
  if (w->count[d]++)
    jw_put(w, ",", 1);
  if (w->flat[d]) {
    if (w->count[d] > 1)
      jw_put(w, " ", 1);
  } else {
    jw_put(w, "\n", 1);
    for (i = 0; i < d; i++)
      jw_put(w, "  ", 2);
  }
  if (key) {
    jw_string(w, key);
    jw_put(w, ": ", 2);
  }
}

static void jw_open(jw *w, const char *key, char bracket, int flat)
{
  jw_item(w, key);
  jw_put(w, &bracket, 1);
  if (w->depth + 1 >= JW_MAX_DEPTH)
    abort(); /* the template's shape is fixed and far shallower */
  w->depth++;
  w->count[w->depth] = 0;
  w->flat[w->depth] = flat || w->flat[w->depth - 1];
}

static void jw_close(jw *w, char bracket)
{
  int d = w->depth--;
  int i;

  if (w->count[d] && !w->flat[d]) {
    jw_put(w, "\n", 1);
    for (i = 0; i < w->depth; i++)
      jw_put(w, "  ", 2);
  }
  jw_put(w, &bracket, 1);
}

static void jw_obj(jw *w, const char *key) { jw_open(w, key, '{', 0); }
static void jw_arr(jw *w, const char *key) { jw_open(w, key, '[', 0); }
static void jw_end_obj(jw *w) { jw_close(w, '}'); }
static void jw_end_arr(jw *w) { jw_close(w, ']'); }

static void jw_str(jw *w, const char *key, const char *value)
{
  jw_item(w, key);
  jw_string(w, value);
}

static void jw_int(jw *w, const char *key, long value)
{
  char digits[24];

  jw_item(w, key);
  snprintf(digits, sizeof digits, "%ld", value);
  jw_puts(w, digits);
}

/* {"Ref": name} */
static void jw_ref(jw *w, const char *key, const char *name)
{
  jw_open(w, key, '{', 1);
  jw_str(w, "Ref", name);
  jw_end_obj(w);
}

/* {"Fn::GetAtt": [resource, attribute]} */
static void jw_getatt(jw *w, const char *key, const char *resource,
                      const char *attribute)
{
  jw_open(w, key, '{', 1);
  jw_open(w, "Fn::GetAtt", '[', 1);
  jw_str(w, NULL, resource);
  jw_str(w, NULL, attribute);
  jw_end_arr(w);
  jw_end_obj(w);
}

/* {"Fn::Sub": text} */
static void jw_sub(jw *w, const char *key, const char *text)
{
  jw_open(w, key, '{', 1);
  jw_str(w, "Fn::Sub", text);
  jw_end_obj(w);
}

/* {"Ref": "AWS::NoValue"}: the property is left out. */
static void jw_novalue(jw *w, const char *key)
{
  jw_ref(w, key, "AWS::NoValue");
}

/* Opens {"Fn::If": [condition, ...]}, on one line when flat; the caller
 * writes both branches and closes with jw_end_if. */
static void jw_if(jw *w, const char *key, const char *condition, int flat)
{
  jw_open(w, key, '{', flat);
  jw_open(w, "Fn::If", '[', 0);
  jw_str(w, NULL, condition);
}

static void jw_end_if(jw *w)
{
  jw_end_arr(w);
  jw_end_obj(w);
}

/* ---- the jobs --------------------------------------------------------- */

/* What the template needs of one job. */
typedef struct {
  char *name;
  char *schedule;   /* NULL when the job has none */
  char *database;   /* the spec's database, NULL when none */
  double timeout_s; /* the spec's, or the default */
  double memory_mb; /* the spec's, or the default */
  char id[192];     /* the logical id stem: purge_history -> PurgeHistory */
} tjob;

/* Copies the spec's string field key (at the top of the stack is the
 * spec) into *out; leaves *out NULL when absent or empty. Returns -1 when
 * memory ran out. */
static int spec_string(lua_State *L, const char *key, char **out)
{
  int rc = 0;

  *out = NULL;
  if (lua_getfield(L, -1, key) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
    *out = strdup(lua_tostring(L, -1));
    rc = *out ? 0 : -1;
  }
  lua_pop(L, 1);
  return rc;
}

static double spec_number(lua_State *L, const char *key, double fallback)
{
  double v = fallback;

  if (lua_getfield(L, -1, key) == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Reads the fields of jobs/NAME.lua that the deployment needs, checking
 * the job as `jobhost check` does. Returns 0, or -1 with err set. */
static int job_read(const char *dir, const char *name, tjob *j, char *err,
                    size_t errlen)
{
  lua_State *L = job_spec_open(dir, name, err, errlen);
  int rc = -1;

  if (!L)
    return -1;
  j->timeout_s = spec_number(L, "timeout", JOB_DEFAULT_TIMEOUT_S);
  j->memory_mb = spec_number(L, "memory", JOB_DEFAULT_MEMORY_MB);
  if (!(j->name = strdup(name)) || spec_string(L, "schedule", &j->schedule) ||
      spec_string(L, "database", &j->database)) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  rc = 0;

out:
  job_spec_close(L);
  return rc;
}

static void job_free(tjob *j)
{
  free(j->name);
  free(j->schedule);
  free(j->database);
}

/* The logical id stem of a job name: its alphanumeric runs, each with
 * its first letter upper-cased (purge_history -> PurgeHistory). Names
 * that differ only in punctuation or case would collide, so a taken
 * stem gets a number: the first of jobs[0..n) keeps the plain stem. */
static void job_make_id(tjob *jobs, size_t n)
{
  size_t i, k, len;
  int up;

  for (i = 0; i < n; i++) {
    char stem[sizeof jobs[i].id - 16];
    const char *p;
    int taken, suffix = 1;

    len = 0;
    up = 1;
    for (p = jobs[i].name; *p && len + 1 < sizeof stem; p++) {
      if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9')) {
        stem[len++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
        up = 0;
      } else {
        up = 1;
      }
    }
    stem[len] = '\0';
    snprintf(jobs[i].id, sizeof jobs[i].id, "%s", stem);
    do {
      taken = 0;
      for (k = 0; k < i; k++)
        if (strcmp(jobs[k].id, jobs[i].id) == 0)
          taken = 1;
      if (taken)
        snprintf(jobs[i].id, sizeof jobs[i].id, "%s%d", stem, ++suffix);
    } while (taken);
  }
}

/* Whether a connection target names a secret (an id or an ARN) rather
 * than a libpq conninfo string or URI, by the rule the database binding
 * connects by (db_lease.c): a URI, or anything holding '=', is a
 * conninfo; "" is libpq's environment; the rest is a secret. */
static int target_is_secret(const char *target)
{
  if (!target || !*target)
    return 0;
  return strncmp(target, "postgresql://", 13) != 0 &&
         strncmp(target, "postgres://", 11) != 0 && !strchr(target, '=');
}

static int str_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- the template ------------------------------------------------------ */

/* What write_template writes from. */
typedef struct {
  int sam;                 /* AWS SAM rather than plain CloudFormation */
  const char *arch;        /* "x86_64" or "arm64" */
  long memory_mb;
  long timeout_s;
  tjob *jobs;
  size_t n_jobs;
  size_t n_scheduled;
  const char **secrets;    /* sorted, no duplicates */
  size_t n_secrets;
} plan;

/* Whether a secret ARN ends in the hyphen and six characters that AWS
 * appends to every secret's name (a complete ARN); a partial ARN (one
 * that stops at the name) does not. As Secrets Manager itself does, a
 * name that ends in a hyphen and six characters reads as complete. */
static int arn_is_complete(const char *arn)
{
  const char *name = strstr(arn, ":secret:");
  size_t len, i;

  if (!name)
    return 1;
  name += strlen(":secret:");
  len = strlen(name);
  if (len < 7 || name[len - 7] != '-')
    return 0;
  for (i = len - 6; i < len; i++)
    if (!isalnum((unsigned char)name[i]))
      return 0;
  return 1;
}

/* The secretsmanager:GetSecretValue statement: a complete ARN as given;
 * a partial ARN, and a plain id as the ARN of a secret of that name in
 * the stack's account and region, with "-??????" for the hyphen and six
 * random characters AWS appends to every secret's ARN. */
static void write_secrets_statement(jw *w, const plan *p)
{
  char arn[1024];
  size_t i;

  jw_obj(w, NULL);
  jw_str(w, "Sid", "JobSecrets");
  jw_str(w, "Effect", "Allow");
  jw_str(w, "Action", "secretsmanager:GetSecretValue");
  jw_arr(w, "Resource");
  for (i = 0; i < p->n_secrets; i++) {
    if (strncmp(p->secrets[i], "arn:", 4) == 0 &&
        arn_is_complete(p->secrets[i])) {
      jw_str(w, NULL, p->secrets[i]);
    } else if (strncmp(p->secrets[i], "arn:", 4) == 0) {
      snprintf(arn, sizeof arn, "%s-??????", p->secrets[i]);
      jw_str(w, NULL, arn);
    } else {
      snprintf(arn, sizeof arn,
               "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:"
               "${AWS::AccountId}:secret:%s-??????",
               p->secrets[i]);
      jw_sub(w, NULL, arn);
    }
  }
  jw_end_arr(w);
  jw_end_obj(w);
}

/* A template parameter of a type with a default; values, when not
 * NULL, lists the allowed values (NULL-terminated). CloudFormation reads
 * every parameter value as a string, numbers too. */
static void write_parameter(jw *w, const char *name, const char *type,
                            const char *fallback, const char *const *values,
                            const char *description)
{
  jw_obj(w, name);
  jw_str(w, "Type", type);
  jw_str(w, "Default", fallback);
  if (values) {
    jw_open(w, "AllowedValues", '[', 1);
    for (; *values; values++)
      jw_str(w, NULL, *values);
    jw_end_arr(w);
  }
  jw_str(w, "Description", description);
  jw_end_obj(w);
}

static void write_parameters(jw *w, const plan *p)
{
  /* The retention periods CloudWatch Logs accepts, in days. */
  static const char *const retention[] = {
      "1",   "3",   "5",    "7",    "14",   "30",   "60",   "90",
      "120", "150", "180",  "365",  "400",  "545",  "731",  "1096",
      "1827", "2192", "2557", "2922", "3288", "3653", NULL};
  static const char *const states[] = {"ENABLED", "DISABLED", NULL};

  jw_obj(w, "Parameters");
  if (!p->sam) {
    write_parameter(w, "CodeBucket", "String", "", NULL,
                    "S3 bucket holding jobhost-lambda.zip; empty "
                    "to deploy the image in ImageUri instead");
    write_parameter(w, "CodeKey", "String", "jobhost-lambda.zip", NULL,
                    "S3 key of the zip in CodeBucket");
    write_parameter(w, "ImageUri", "String", "", NULL,
                    "ECR image URI, used when CodeBucket is empty "
                    "(image deployments)");
  }
  write_parameter(w, "SubnetIds", "CommaDelimitedList", "", NULL,
                  "Subnets that reach the databases (empty: no VPC)");
  write_parameter(w, "SecurityGroupIds", "CommaDelimitedList", "", NULL,
                  "Security groups of the function, allowed into the "
                  "databases' security groups");
  write_parameter(w, "ScheduleState", "String", "ENABLED", states,
                  "DISABLED deploys the rules without firing them");
  write_parameter(w, "LogRetentionDays", "Number", "30", retention,
                  "Days CloudWatch Logs keeps the jobs' records");
  jw_end_obj(w);
}

/* Condition name: true when the parameter is not empty. A list
 * parameter is joined first, since Fn::Equals compares strings. */
static void write_not_empty(jw *w, const char *name, const char *parameter,
                            int list)
{
  jw_obj(w, name);
  jw_open(w, "Fn::Not", '[', 1);
  jw_open(w, NULL, '{', 1);
  jw_open(w, "Fn::Equals", '[', 1);
  if (list) {
    jw_open(w, NULL, '{', 1);
    jw_open(w, "Fn::Join", '[', 1);
    jw_str(w, NULL, "");
    jw_ref(w, NULL, parameter);
    jw_end_arr(w);
    jw_end_obj(w);
  } else {
    jw_ref(w, NULL, parameter);
  }
  jw_str(w, NULL, "");
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_arr(w);
  jw_end_obj(w);
}

/* UseVpc: subnets were given. UseZip (CloudFormation): a code bucket was
 * given, so the function runs the zip; otherwise the image. */
static void write_conditions(jw *w, const plan *p)
{
  jw_obj(w, "Conditions");
  write_not_empty(w, "UseVpc", "SubnetIds", 1);
  if (!p->sam)
    write_not_empty(w, "UseZip", "CodeBucket", 0);
  jw_end_obj(w);
}

/* The role of a CloudFormation deployment. SAM derives its own from the
 * function's Policies. */
static void write_role(jw *w, const plan *p)
{
  jw_obj(w, "JobsRole");
  jw_str(w, "Type", "AWS::IAM::Role");
  jw_obj(w, "Properties");
  jw_obj(w, "AssumeRolePolicyDocument");
  jw_str(w, "Version", "2012-10-17");
  jw_arr(w, "Statement");
  jw_obj(w, NULL);
  jw_str(w, "Effect", "Allow");
  jw_open(w, "Principal", '{', 1);
  jw_str(w, "Service", "lambda.amazonaws.com");
  jw_end_obj(w);
  jw_str(w, "Action", "sts:AssumeRole");
  jw_end_obj(w);
  jw_end_arr(w);
  jw_end_obj(w);
  jw_arr(w, "ManagedPolicyArns");
  jw_sub(w, NULL, "arn:${AWS::Partition}:iam::aws:policy/service-role/"
         "AWSLambdaBasicExecutionRole");
  jw_sub(w, NULL, "arn:${AWS::Partition}:iam::aws:policy/service-role/"
         "AWSLambdaVPCAccessExecutionRole");
  jw_end_arr(w);
  jw_arr(w, "Policies");
  jw_obj(w, NULL);
  jw_str(w, "PolicyName", "jobhost-jobs");
  jw_obj(w, "PolicyDocument");
  jw_str(w, "Version", "2012-10-17");
  jw_arr(w, "Statement");
  jw_obj(w, NULL);
  jw_str(w, "Sid", "DeadLetters");
  jw_str(w, "Effect", "Allow");
  jw_str(w, "Action", "sqs:SendMessage");
  jw_getatt(w, "Resource", "JobsDeadLetterQueue", "Arn");
  jw_end_obj(w);
  if (p->n_secrets)
    write_secrets_statement(w, p);
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_obj(w);
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_obj(w);
}

static void write_function(jw *w, const plan *p)
{
  char description[256];

  snprintf(description, sizeof description,
           "jobhost: %zu PostgreSQL jobs, %zu scheduled", p->n_jobs,
           p->n_scheduled);

  jw_obj(w, "JobsFunction");
  jw_str(w, "Type", p->sam ? "AWS::Serverless::Function"
                           : "AWS::Lambda::Function");
  jw_obj(w, "Properties");
  jw_str(w, "Description", description);
  if (p->sam) {
    jw_str(w, "CodeUri", "jobhost-lambda.zip");
    jw_str(w, "Runtime", "provided.al2023");
    jw_str(w, "Handler", "jobhost");
  } else {
    jw_if(w, "PackageType", "UseZip", 1);
    jw_str(w, NULL, "Zip");
    jw_str(w, NULL, "Image");
    jw_end_if(w);
    jw_if(w, "Code", "UseZip", 0);
    jw_open(w, NULL, '{', 1);
    jw_ref(w, "S3Bucket", "CodeBucket");
    jw_ref(w, "S3Key", "CodeKey");
    jw_end_obj(w);
    jw_open(w, NULL, '{', 1);
    jw_ref(w, "ImageUri", "ImageUri");
    jw_end_obj(w);
    jw_end_if(w);
    jw_if(w, "Runtime", "UseZip", 1);
    jw_str(w, NULL, "provided.al2023");
    jw_novalue(w, NULL);
    jw_end_if(w);
    jw_if(w, "Handler", "UseZip", 1);
    jw_str(w, NULL, "jobhost");
    jw_novalue(w, NULL);
    jw_end_if(w);
    jw_getatt(w, "Role", "JobsRole", "Arn");
  }
  jw_open(w, "Architectures", '[', 1);
  jw_str(w, NULL, p->arch);
  jw_end_arr(w);
  jw_int(w, "MemorySize", p->memory_mb);
  jw_int(w, "Timeout", p->timeout_s);

  jw_obj(w, "LoggingConfig");
  jw_str(w, "LogFormat", "JSON");
  jw_str(w, "ApplicationLogLevel", "INFO");
  jw_str(w, "SystemLogLevel", "WARN");
  jw_ref(w, "LogGroup", "JobsLogGroup");
  jw_end_obj(w);

  if (p->sam) {
    jw_obj(w, "DeadLetterQueue");
    jw_str(w, "Type", "SQS");
    jw_getatt(w, "TargetArn", "JobsDeadLetterQueue", "Arn");
    jw_end_obj(w);
  } else {
    jw_obj(w, "DeadLetterConfig");
    jw_getatt(w, "TargetArn", "JobsDeadLetterQueue", "Arn");
    jw_end_obj(w);
  }

  jw_if(w, "VpcConfig", "UseVpc", 0);
  jw_obj(w, NULL);
  jw_ref(w, "SubnetIds", "SubnetIds");
  jw_ref(w, "SecurityGroupIds", "SecurityGroupIds");
  jw_end_obj(w);
  jw_novalue(w, NULL);
  jw_end_if(w);

  if (p->sam) {
    jw_arr(w, "Policies");
    jw_str(w, NULL, "AWSLambdaVPCAccessExecutionRole");
    if (p->n_secrets) {
      jw_obj(w, NULL);
      jw_str(w, "Version", "2012-10-17");
      jw_arr(w, "Statement");
      write_secrets_statement(w, p);
      jw_end_arr(w);
      jw_end_obj(w);
    }
    jw_end_arr(w);
  }
  jw_end_obj(w);
  jw_end_obj(w);
}

/* The queue, and when rules exist, the policy that lets EventBridge put
 * the events it could not deliver there. */
static void write_dead_letters(jw *w, const plan *p)
{
  char rule[256];
  size_t i;

  jw_obj(w, "JobsDeadLetterQueue");
  jw_str(w, "Type", "AWS::SQS::Queue");
  jw_obj(w, "Properties");
  jw_int(w, "MessageRetentionPeriod", 1209600);
  jw_item(w, "SqsManagedSseEnabled");
  jw_puts(w, "true");
  jw_end_obj(w);
  jw_end_obj(w);

  if (!p->n_scheduled)
    return;
  jw_obj(w, "JobsDeadLetterQueuePolicy");
  jw_str(w, "Type", "AWS::SQS::QueuePolicy");
  jw_obj(w, "Properties");
  jw_open(w, "Queues", '[', 1);
  jw_ref(w, NULL, "JobsDeadLetterQueue");
  jw_end_arr(w);
  jw_obj(w, "PolicyDocument");
  jw_str(w, "Version", "2012-10-17");
  jw_arr(w, "Statement");
  jw_obj(w, NULL);
  jw_str(w, "Sid", "UndeliveredSchedules");
  jw_str(w, "Effect", "Allow");
  jw_open(w, "Principal", '{', 1);
  jw_str(w, "Service", "events.amazonaws.com");
  jw_end_obj(w);
  jw_str(w, "Action", "sqs:SendMessage");
  jw_getatt(w, "Resource", "JobsDeadLetterQueue", "Arn");
  jw_obj(w, "Condition");
  jw_obj(w, "ArnEquals");
  jw_arr(w, "aws:SourceArn");
  for (i = 0; i < p->n_jobs; i++) {
    if (!p->jobs[i].schedule)
      continue;
    snprintf(rule, sizeof rule, "Schedule%s", p->jobs[i].id);
    jw_getatt(w, NULL, rule, "Arn");
  }
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_obj(w);
  jw_end_obj(w);
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_obj(w);
  jw_end_obj(w);
}

/* One rule and its invoke permission for a scheduled job. */
static void write_schedule(jw *w, const tjob *j)
{
  char rule[256], permission[256], text[512];

  snprintf(rule, sizeof rule, "Schedule%s", j->id);
  snprintf(permission, sizeof permission, "Invoke%s", j->id);

  jw_obj(w, rule);
  jw_str(w, "Type", "AWS::Events::Rule");
  jw_obj(w, "Properties");
  snprintf(text, sizeof text, "jobhost job %s", j->name);
  jw_str(w, "Description", text);
  jw_str(w, "ScheduleExpression", j->schedule);
  jw_ref(w, "State", "ScheduleState");
  jw_arr(w, "Targets");
  jw_obj(w, NULL);
  jw_str(w, "Id", "jobhost");
  jw_getatt(w, "Arn", "JobsFunction", "Arn");
  /* Job names are [A-Za-z0-9_.-]+: nothing in them needs escaping. */
  snprintf(text, sizeof text, "{\"job\":\"%s\"}", j->name);
  jw_str(w, "Input", text);
  jw_obj(w, "RetryPolicy");
  jw_int(w, "MaximumRetryAttempts", 4);
  jw_int(w, "MaximumEventAgeInSeconds", 3600);
  jw_end_obj(w);
  jw_obj(w, "DeadLetterConfig");
  jw_getatt(w, "Arn", "JobsDeadLetterQueue", "Arn");
  jw_end_obj(w);
  jw_end_obj(w);
  jw_end_arr(w);
  jw_end_obj(w);
  jw_end_obj(w);

  jw_obj(w, permission);
  jw_str(w, "Type", "AWS::Lambda::Permission");
  jw_obj(w, "Properties");
  jw_str(w, "Action", "lambda:InvokeFunction");
  jw_ref(w, "FunctionName", "JobsFunction");
  jw_str(w, "Principal", "events.amazonaws.com");
  jw_getatt(w, "SourceArn", rule, "Arn");
  jw_end_obj(w);
  jw_end_obj(w);
}

static void write_outputs(jw *w)
{
  jw_obj(w, "Outputs");
  jw_obj(w, "FunctionName");
  jw_ref(w, "Value", "JobsFunction");
  jw_end_obj(w);
  jw_obj(w, "FunctionArn");
  jw_getatt(w, "Value", "JobsFunction", "Arn");
  jw_end_obj(w);
  jw_obj(w, "LogGroupName");
  jw_ref(w, "Value", "JobsLogGroup");
  jw_end_obj(w);
  jw_obj(w, "DeadLetterQueueUrl");
  jw_ref(w, "Value", "JobsDeadLetterQueue");
  jw_end_obj(w);
  jw_end_obj(w);
}

static void write_template(jw *w, const plan *p)
{
  size_t i;

  jw_obj(w, NULL);
  jw_str(w, "AWSTemplateFormatVersion", "2010-09-09");
  if (p->sam)
    jw_str(w, "Transform", "AWS::Serverless-2016-10-31");
  jw_str(w, "Description", "jobhost: scheduled PostgreSQL jobs on AWS "
         "Lambda (written by jobhost template)");
  write_parameters(w, p);
  write_conditions(w, p);

  jw_obj(w, "Resources");
  write_function(w, p);
  if (!p->sam)
    write_role(w, p);
  jw_obj(w, "JobsLogGroup");
  jw_str(w, "Type", "AWS::Logs::LogGroup");
  jw_obj(w, "Properties");
  jw_sub(w, "LogGroupName", "/aws/lambda/${AWS::StackName}-jobhost");
  jw_ref(w, "RetentionInDays", "LogRetentionDays");
  jw_end_obj(w);
  jw_end_obj(w);
  write_dead_letters(w, p);
  for (i = 0; i < p->n_jobs; i++)
    if (p->jobs[i].schedule)
      write_schedule(w, &p->jobs[i]);
  jw_end_obj(w);

  write_outputs(w);
  jw_end_obj(w);
  jw_put(w, "\n", 1);
}

/* ---- building ---------------------------------------------------------- */

/* The architecture this binary was built for, as Lambda names it. */
static const char *build_arch(void)
{
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return NULL;
#endif
}

int template_target_is_secret(const char *target)
{
  return target_is_secret(target);
}

/* Sizes the function from its jobs: the largest heap limit plus the
 * process's own needs, the longest timeout plus a margin, each within
 * Lambda's bounds. A job whose timeout Lambda cannot give is logged. */
static void size_function(plan *p)
{
  double memory = 0, timeout = 0;
  size_t i;

  for (i = 0; i < p->n_jobs; i++) {
    if (p->jobs[i].memory_mb > memory)
      memory = p->jobs[i].memory_mb;
    if (p->jobs[i].timeout_s > timeout)
      timeout = p->jobs[i].timeout_s;
    if (p->jobs[i].timeout_s > LAMBDA_TIMEOUT_MAX)
      log_emit(LOG_WARN, "job timeout over the lambda limit",
               (log_field[]){LOG_S("job", p->jobs[i].name),
                             LOG_N("timeout", p->jobs[i].timeout_s),
                             LOG_I("limit", LAMBDA_TIMEOUT_MAX)},
               3);
  }
  p->memory_mb = (long)ceil(memory) + MEMORY_HEADROOM_MB;
  if (p->memory_mb < LAMBDA_MEMORY_MIN)
    p->memory_mb = LAMBDA_MEMORY_MIN;
  if (p->memory_mb > LAMBDA_MEMORY_MAX)
    p->memory_mb = LAMBDA_MEMORY_MAX;
  p->timeout_s = (long)ceil(timeout) + TIMEOUT_MARGIN_S;
  if (p->timeout_s > LAMBDA_TIMEOUT_MAX)
    p->timeout_s = LAMBDA_TIMEOUT_MAX;
}

int template_build(const template_options *o, char **out, char *err,
                   size_t errlen)
{
  const char *dir = o->jobs_dir ? o->jobs_dir : job_default_dir();
  const char **secrets = NULL;
  char **names = NULL;
  tjob *jobs = NULL;
  plan p;
  jw w;
  size_t n = 0, n_extra = 0, n_secrets = 0, n_invalid = 0, i, k;
  int rc = -1;

  *out = NULL;
  if (errlen > 0)
    err[0] = '\0';
  memset(&p, 0, sizeof p);
  memset(&w, 0, sizeof w);
  p.sam = o->format == TEMPLATE_SAM;
  p.arch = build_arch();
  if (!p.arch) {
    snprintf(err, errlen, "Lambda runs x86_64 and arm64; this build is "
             "neither");
    return -1;
  }

  names = job_list(dir);
  if (!names) {
    snprintf(err, errlen, "cannot read the jobs folder %s: %s", dir,
             strerror(errno));
    goto out;
  }
  while (names[n])
    n++;
  while (o->secrets && o->secrets[n_extra])
    n_extra++;
  if (n == 0) {
    snprintf(err, errlen, "no jobs in %s", dir);
    goto out;
  }
  jobs = calloc(n, sizeof *jobs);
  secrets = calloc(n + n_extra + 1, sizeof *secrets);
  if (!jobs || !secrets) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }

  /* Every job must pass the checker, or no template is written; each
   * one that does not is named. */
  for (i = 0; i < n; i++) {
    char why[2048];
    size_t used = strlen(err);

    if (job_read(dir, names[i], &jobs[i], why, sizeof why) != 0) {
      if (used < errlen)
        snprintf(err + used, errlen - used, "%sjob %s is invalid: %s",
                 n_invalid ? "\n" : "", names[i], why);
      n_invalid++;
      continue;
    }
    if (jobs[i].schedule)
      p.n_scheduled++;
    if (target_is_secret(jobs[i].database))
      secrets[n_secrets++] = jobs[i].database;
  }
  if (n_invalid)
    goto out;
  for (i = 0; i < n_extra; i++) {
    if (!target_is_secret(o->secrets[i])) {
      snprintf(err, errlen, "\"%s\" is no secret id or ARN", o->secrets[i]);
      goto out;
    }
    secrets[n_secrets++] = o->secrets[i];
  }
  job_make_id(jobs, n);

  /* The policy names each secret once. */
  qsort(secrets, n_secrets, sizeof *secrets, str_cmp);
  for (i = 0, k = 0; i < n_secrets; i++)
    if (k == 0 || strcmp(secrets[k - 1], secrets[i]) != 0)
      secrets[k++] = secrets[i];

  p.jobs = jobs;
  p.n_jobs = n;
  p.secrets = secrets;
  p.n_secrets = k;
  size_function(&p);

  write_template(&w, &p);
  if (w.oom) {
    snprintf(err, errlen, "out of memory");
    goto out;
  }
  *out = w.text;
  w.text = NULL;
  rc = 0;

out:
  free(w.text);
  if (jobs)
    for (i = 0; i < n; i++)
      job_free(&jobs[i]);
  free(jobs);
  free(secrets);
  job_list_free(names);
  return rc;
}
