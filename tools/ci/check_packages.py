"""Checks the packages of `dotnet pack GhmGen.sln -c Release -o DIR`: the four packages at the version
of build/Version.props, each with its README, license, repository metadata (address and commit),
description and symbols; GhmGen with the generator as its C# analyzer and the NativeAOT defaults
under buildTransitive; GhmGen.Models and GhmGen.Gpu depending on GhmGen with every asset (so the
analyzer reaches their users); GhmGen.Cli as the `ghm` .NET tool; and, with --xml-docs required,
each library's XML documentation beside it.
Usage: python3 tools/ci/check_packages.py DIR [--xml-docs required|optional]"""
import re
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = {"GhmGen": "GhmGen.Runtime", "GhmGen.Models": "GhmGen.Models", "GhmGen.Gpu": "GhmGen.Runtime.Gpu"}


def version():
    text = (ROOT / "build" / "Version.props").read_text()
    return re.search(r"<GhmGenVersion>([^<]+)</GhmGenVersion>", text).group(1)


def nuspec(package):
    name = next(n for n in package.namelist() if n.endswith(".nuspec") and "/" not in n)
    root = ET.fromstring(package.read(name))
    ns = {"n": root.tag[1:root.tag.index("}")]}
    return root.find("n:metadata", ns), ns


def check(directory, xml_docs):
    problems = []
    v = version()
    for pid in ["GhmGen", "GhmGen.Models", "GhmGen.Gpu", "GhmGen.Cli"]:
        path = directory / f"{pid}.{v}.nupkg"
        if not path.exists():
            problems.append(f"{path.name}: missing")
            continue
        with zipfile.ZipFile(path) as package:
            files = set(package.namelist())
            meta, ns = nuspec(package)
            text = lambda tag: (meta.findtext(f"n:{tag}", default="", namespaces=ns) or "").strip()

            def need(condition, what):
                if not condition:
                    problems.append(f"{path.name}: {what}")

            need(text("id") == pid and text("version") == v, f"id/version are {text('id')} {text('version')}, expected {pid} {v}")
            need(text("readme") == "README.md" and "README.md" in files, "no README.md")
            need("LICENSE" in files, "no LICENSE file")
            license = meta.find("n:license", ns)
            need(license is not None and license.get("type") == "expression" and license.text, "no license expression")
            repository = meta.find("n:repository", ns)
            need(repository is not None and repository.get("type") == "git" and repository.get("url", "").startswith("https://")
                 and re.fullmatch(r"[0-9a-f]{40}", repository.get("commit", "")), "repository metadata lacks type, address or commit")
            need(len(text("description")) > 40 and text("description") != "Package Description", "no description")
            need(text("authors") and text("authors") != pid, "no authors")
            if pid in LIBRARIES:
                assembly = LIBRARIES[pid]
                need(f"lib/net10.0/{assembly}.dll" in files, f"no lib/net10.0/{assembly}.dll")
                if xml_docs == "required":
                    need(f"lib/net10.0/{assembly}.xml" in files, f"no XML documentation lib/net10.0/{assembly}.xml")
            if pid == "GhmGen":
                need("analyzers/dotnet/cs/GhmGen.Generators.dll" in files, "the generator is not analyzers/dotnet/cs/GhmGen.Generators.dll")
                need("buildTransitive/GhmGen.targets" in files, "no buildTransitive/GhmGen.targets")
                need(not any(f.startswith("lib/") and "Generators" in f for f in files), "the generator is also a lib assembly")
            if pid in ("GhmGen.Models", "GhmGen.Gpu"):
                deps = [d for d in meta.iter(f"{{{ns['n']}}}dependency") if d.get("id") == "GhmGen"]
                need(len(deps) == 1 and deps[0].get("version") == v and "exclude" not in deps[0].attrib,
                     "does not depend on GhmGen of the same version with every asset (its analyzer and build files)")
            if pid == "GhmGen.Cli":
                types = [t.get("name") for t in meta.iter(f"{{{ns['n']}}}packageType")]
                need(types == ["DotnetTool"], f"package types {types}, expected DotnetTool")
                need("tools/net10.0/any/ghm.dll" in files and "tools/net10.0/any/DotnetToolSettings.xml" in files, "no tools/net10.0/any/ghm.dll")
                settings = package.read("tools/net10.0/any/DotnetToolSettings.xml").decode() if "tools/net10.0/any/DotnetToolSettings.xml" in files else ""
                need('<Command Name="ghm"' in settings, "the tool's command is not ghm")
        symbols = directory / f"{pid}.{v}.snupkg"
        if not symbols.exists():
            problems.append(f"{symbols.name}: missing")
        else:
            with zipfile.ZipFile(symbols) as package:
                if not any(n.endswith(".pdb") for n in package.namelist()):
                    problems.append(f"{symbols.name}: no .pdb")
    return problems


def main(argv):
    directory = Path(argv[1])
    xml_docs = argv[argv.index("--xml-docs") + 1] if "--xml-docs" in argv else "required"
    problems = check(directory, xml_docs)
    for p in problems:
        print(f"check_packages: {p}")
    if problems:
        return 1
    print(f"check_packages: GhmGen, GhmGen.Models, GhmGen.Gpu, GhmGen.Cli {version()} are complete (XML docs {xml_docs})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
