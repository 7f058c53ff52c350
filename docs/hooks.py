"""MkDocs hook: the benchmark plots in benchmarks/results/ join the site as results/<name>.png, so study pages show
the files the benchmarks wrote (nothing is copied into docs/ by hand)."""

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File(f"results/{plot.name}", src_dir=str(RESULTS.parent), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
