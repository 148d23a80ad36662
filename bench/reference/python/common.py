"""common.py: how the Python reference jobs get their connection, written
as such jobs are written today: boto3 fetches the RDS secret from Secrets
Manager, psycopg2 connects with its fields.

AWS_ENDPOINT_URL is passed to boto3 by hand because Debian's boto3 (1.26)
predates the SDKs' support for that variable; region and credentials come
from the environment as usual. BENCH_SECRET_ID names the secret
(default bench/db).
"""
import json
import os

import boto3
import psycopg2


def connect(application_name):
    """Fetches the secret and returns an open psycopg2 connection."""
    client = boto3.client("secretsmanager",
                          endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    answer = client.get_secret_value(
        SecretId=os.environ.get("BENCH_SECRET_ID", "bench/db"))
    secret = json.loads(answer["SecretString"])
    return psycopg2.connect(host=secret["host"], port=secret["port"],
                            user=secret["username"],
                            password=secret["password"],
                            dbname=secret.get("dbname", "postgres"),
                            application_name=application_name)
