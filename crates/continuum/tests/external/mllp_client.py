"""A real external HL7 v2 client for Continuum's MLLP listener, written with python-hl7
(https://pypi.org/project/hl7/), not with our code: it parses each message file with that
library, sends it with its MLLPClient, parses the ACK with it, and prints one line per message:

    FILE CONTROL_ID ACK_CODE ACK_CONTROL_ID

Then it sends a message with an unknown event and one without a PID and prints their ACK codes
the same way (FILE is `unknown-event` / `missing-pid`).

Usage: mllp_client.py HOST PORT FILE...
"""

import sys

import hl7
import hl7.client


def ack_of(raw):
    text = raw.strip(b"\x0b\x1c\r\n").decode("utf-8")
    ack = hl7.parse(text.replace("\n", "\r"))
    return str(ack.segment("MSA")[1]), str(ack.segment("MSA")[2])


def main():
    host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with hl7.client.MLLPClient(host, port) as client:
        for path in files:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r").strip("\r")
            message = hl7.parse(text)
            control_id = str(message.segment("MSH")[10])
            code, answered = ack_of(client.send_message(str(message)))
            print(path.rsplit("/", 1)[-1], control_id, code, answered, flush=True)
        header = "MSH|^~\\&|PYCLIENT|EXT|CONT|CONT|20240301120000||{}|{}|P|2.5.1"
        unknown = header.format("ADT^Z99^ADT_A01", "PY-UNKNOWN") + "\rEVN|Z99\rPID|1||PY1^^^EXT^MR||Py^Test\r"
        code, answered = ack_of(client.send_message(unknown))
        print("unknown-event", "PY-UNKNOWN", code, answered, flush=True)
        no_pid = header.format("ADT^A01^ADT_A01", "PY-NOPID") + "\rEVN|A01\rPV1|1|I\r"
        code, answered = ack_of(client.send_message(no_pid))
        print("missing-pid", "PY-NOPID", code, answered, flush=True)


if __name__ == "__main__":
    main()
