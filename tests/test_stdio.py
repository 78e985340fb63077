"""sdk.stdio: engines' stdout goes to stderr inside the block, from any thread, and comes back after."""

import os
import sys
import threading

from sdk.stdio import stdout_to_stderr


def test_nested_and_concurrent_blocks_restore_stdout(capfd):
    real = sys.stdout
    inside = threading.Barrier(3)

    def chatter(tag):
        with stdout_to_stderr():
            inside.wait(timeout=10)  # all three blocks are open at once
            os.write(1, f"fd {tag}\n".encode())
            print(f"py {tag}")
            inside.wait(timeout=10)

    with stdout_to_stderr():
        threads = [threading.Thread(target=chatter, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        inside.wait(timeout=10)
        inside.wait(timeout=10)
        for thread in threads:
            thread.join()
        with stdout_to_stderr():
            print("nested")
    print("after")
    captured = capfd.readouterr()
    assert sys.stdout is real
    assert captured.out == "after\n"
    for text in ("fd 0", "fd 1", "py 0", "py 1", "nested"):
        assert text in captured.err
