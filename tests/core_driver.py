"""A small program driving the core the way the desk does, for crash and two-instance tests.

One *life*: load the model, then, in one thread, write a few new generated pictures into the
folder and scan it, round after round (the desk's scan worker, with its own connection); and
in the main thread make review decisions and undo some, as fast as a moderator never could
(the desk's GUI thread, with its own connection). After each `ReviewStore.decide` (or
`revert`) returns, the life appends `COMMITTED <id> <hash> <label>` to its report file, with a
single unbuffered write: what the report says was committed, the library must hold, whenever
the process is killed.

    python tests/core_driver.py run '<json>'   one life, to the end (two-instance test)
    python tests/core_driver.py zygote         imports torch and timm once, then forks a
                                               life for each `FORK <json>` line on stdin
                                               (the crash test kills lives, not the zygote)

Report lines: READY, SCAN <round>, SCANNED <round> <scored> <cached> <errors>, COMMITTED ...,
ERROR <what> (anything unexpected, with the traceback on stderr), DONE.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path


def life(args: dict) -> None:
    from nsfw_desk.core.review import DecisionInput, ReviewStore
    from nsfw_desk.core.runtime import load_model
    from nsfw_desk.core.scan import ScanOptions, scan_folder
    from nsfw_desk.core.store import Library
    from nsfw_desk.synthetic import write_photo

    report = os.open(args["report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def say(line: str) -> None:
        os.write(report, (line + "\n").encode())

    rng = random.Random(args["seed"])
    deadline = time.monotonic() + args.get("max_seconds", 60)
    model = load_model(args["model"], device="cpu")
    say("READY")
    folder = Path(args["folder"])
    library_path = Path(args["library"])
    scanning_done = threading.Event()

    def scanner() -> None:
        try:
            library = Library(library_path)
            try:
                for round_ in range(args["rounds"]):
                    for i in range(args["new_images"]):
                        size = (rng.randint(64, 200), rng.randint(64, 200))
                        write_photo(
                            folder / f"life{args['seed']}" / f"r{round_}_{i}.jpg",
                            size,
                            seed=args["seed"] * 10_000 + round_ * 100 + i,
                        )
                    say(f"SCAN {round_}")
                    summary = scan_folder(
                        folder, model, library, options=ScanOptions(batch_size=4, workers=2)
                    )
                    say(f"SCANNED {round_} {summary.scored} {summary.cached} {summary.errors}")
                    if time.monotonic() > deadline:
                        break
            finally:
                library.close()
        except BaseException as exc:
            traceback.print_exc()
            say(f"ERROR scan {type(exc).__name__}: {exc}".replace("\n", " "))
        finally:
            scanning_done.set()

    thread = threading.Thread(target=scanner, name="scan-worker")
    thread.start()
    try:
        library = Library(library_path)
        reviews = ReviewStore(library)
        mine: list[int] = []
        while not scanning_done.is_set() and time.monotonic() < deadline:
            hashes = [
                row[0]
                for row in library.db.execute(
                    "SELECT DISTINCT hash FROM files WHERE hash IS NOT NULL ORDER BY hash"
                )
            ]
            if not hashes:
                time.sleep(0.01)
                continue
            reviewer = f"life{args['seed']}"
            if mine and rng.random() < 0.2:
                ids = reviews.revert([rng.choice(mine)], reviewer=reviewer, threshold=0.5)
                picked = [
                    row[0]
                    for row in library.db.execute(
                        f"SELECT hash FROM decisions WHERE id IN ({','.join('?' * len(ids))}) "
                        "ORDER BY id",
                        ids,
                    )
                ]
                labels = ["?"] * len(ids)  # whatever the label before was
            else:
                picked = rng.sample(hashes, min(len(hashes), rng.randint(1, 3)))
                label = rng.choice(["unsafe", "safe", None])
                ids = reviews.decide(
                    [DecisionInput(h, model.model_id, rng.random(), None) for h in picked],
                    label,
                    reviewer=reviewer,
                    threshold=0.5,
                )
                labels = [label or "-"] * len(ids)
            for decision_id, digest, shown in zip(ids, picked, labels, strict=True):
                say(f"COMMITTED {decision_id} {digest} {shown}")
            mine.extend(ids)
            time.sleep(rng.uniform(0, 0.005))
        library.close()
    except BaseException as exc:
        traceback.print_exc()
        say(f"ERROR review {type(exc).__name__}: {exc}".replace("\n", " "))
    thread.join()
    say("DONE")


def zygote() -> None:
    """Pay for `import torch, timm` once; each life is a fork of this process.

    Nothing here has run a torch operation, so no thread pool exists yet to break in the
    forked child; each life loads the model itself.
    """
    import timm  # noqa: F401
    import torch  # noqa: F401

    import nsfw_desk.core.review  # noqa: F401
    import nsfw_desk.core.runtime  # noqa: F401
    import nsfw_desk.core.scan  # noqa: F401
    import nsfw_desk.synthetic  # noqa: F401

    print("ZYGOTE", flush=True)
    for line in sys.stdin:
        command, _, payload = line.strip().partition(" ")
        if command == "FORK":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    life(json.loads(payload))
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            print(f"PID {pid}", flush=True)
        elif command == "WAIT":
            pid, status = os.waitpid(int(payload), 0)
            print(f"EXIT {pid} {status}", flush=True)
        elif command == "QUIT":
            break


if __name__ == "__main__":
    if sys.argv[1] == "zygote":
        zygote()
    else:
        life(json.loads(sys.argv[2]))
