"""noop50 for pyinfra: the same workload as ../bosun/roles/noop50/tasks.yml.

The guarded commands read the File fact first, like `creates:` in bosun and Ansible.
"""
import os
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "templates", "noop.j2")

base = host.data.get("bench_base", "/tmp/bosun-bench")
root = f"{base}/pyinfra/{host.name}"

for i in range(5):
    files.directory(name=f"directory d{i}", path=f"{root}/d{i}")

for i in range(20):
    files.put(
        name=f"file f{i}",
        src=StringIO(f"noop50 file {i}\nsecond line\n"),
        dest=f"{root}/d{i % 5}/f{i}.txt",
    )

for i in range(20):
    files.template(
        name=f"template t{i}",
        src=TEMPLATE,
        dest=f"{root}/d{i % 5}/t{i}.conf",
        item=i,
        inventory_hostname=host.name,
    )

for i in range(5):
    done = f"{root}/c{i}.done"
    if not host.get_fact(File, path=done):
        server.shell(name=f"command c{i}", commands=[f"touch {done}"])
