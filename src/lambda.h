/* lambda.h: `jobhost lambda`, the AWS Lambda custom runtime. */
#ifndef JOBHOST_LAMBDA_H
#define JOBHOST_LAMBDA_H

/* Serves invocations from the Lambda Runtime API named by
 * AWS_LAMBDA_RUNTIME_API until the API fails or the process is told to
 * stop. argv[0] is "lambda"; the only options are --jobs DIR and --help.
 * Returns the exit status: 1 when the jobs cannot be loaded (after
 * posting init/error) or the API fails, 0 after SIGTERM, 2 on bad
 * usage. */
int lambda_main(int argc, char **argv);

#endif
