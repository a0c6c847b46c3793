"""simple-salesforce against convmsg's Salesforce REST bridge, as a Salesforce user runs it.

Reads a plan from stdin ({"first_page": SOQL, "count": SOQL, "query_all": [SOQL, ...],
"include_deleted": [SOQL, ...]}), runs `query` for the first page and for the COUNT()
query (query_all counts the records it collected, none for COUNT()), `query_all` (which
follows nextRecordsUrl to the end) for the others — `include_deleted=True` being the
queryAll resource — and prints what the client returned as JSON. The Rust test
(tests/api/salesforce_clients.rs) compares it with the database.

    python soql_test.py --instance https://127.0.0.1:PORT --token cm_... --ca ca.pem < plan.json
"""

import argparse
import json
import sys

import requests
from simple_salesforce import Salesforce


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instance", required=True, help="https://host:port of the convmsg listener")
    parser.add_argument("--token", required=True, help="a convmsg token with the read scope")
    parser.add_argument("--ca", required=True, help="the CA certificate (PEM) the listener's certificate chains to")
    args = parser.parse_args()
    plan = json.load(sys.stdin)

    session = requests.Session()
    # Only this CA, and no proxy: REQUESTS_CA_BUNDLE or HTTPS_PROXY in the environment
    # would otherwise override `verify` or route loopback traffic elsewhere.
    session.trust_env = False
    session.verify = args.ca
    sf = Salesforce(instance_url=args.instance, session_id=args.token, version="65.0", session=session)

    first = sf.query(plan["first_page"])
    out = {
        "first_page": {
            "totalSize": first["totalSize"],
            "done": first["done"],
            "records": len(first["records"]),
            "nextRecordsUrl": first.get("nextRecordsUrl"),
        },
        "count": sf.query(plan["count"]),
        "query_all": [sf.query_all(soql) for soql in plan["query_all"]],
        "include_deleted": [sf.query_all(soql, include_deleted=True) for soql in plan["include_deleted"]],
    }
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
