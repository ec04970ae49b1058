# lakescore's container image: the jobs (python -m jobs.<name>, or ./spark-submit.sh) with Java 17,
# Python 3.11, the pinned dependencies and the MOJO scorer jar.
#
# Base: Debian bookworm's slim Python 3.11 image, not Spark's official image
# (apache/spark:<v>-scala2.13-java17-python3-ubuntu): that one ships Ubuntu's Python 3.10, and
# lakescore needs exactly 3.11 and pyspark's own Spark (from the wheel, pinned in
# constraints.txt) so the driver, executors and the Dask workers run the same versions. Java
# comes from Debian (openjdk-17: Spark 4 needs >= 17, H2O 3.46 refuses newer).
#
# The build stage installs through the same scripts/setup.sh and constraints.txt that
# `make setup` and the tests use, then replaces the checkout on the venv's path with lakescore's
# built wheel. The final stage has the JRE, the venv, the jars and the conf, no compiler.
# Build: docker build -t lakescore:0.1.0 .   (the tag is pyproject.toml's version)

FROM python:3.11-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's security updates move these versions; the release (bookworm) pins them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jdk-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/lakescore
COPY requirements.txt constraints.txt pyproject.toml README.md ./
COPY scripts/ scripts/
COPY java/ java/
COPY engine/ engine/
COPY jobs/ jobs/
ENV PYTHON=python3.11 PIP_NO_CACHE_DIR=1
RUN bash scripts/setup.sh \
    && .venv/bin/python -m pip wheel --no-deps --no-build-isolation -w dist . \
    && rm "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lakescore.pth" \
    && .venv/bin/python -m pip install --no-deps dist/lakescore-*.whl

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="lakescore" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin lakescore
WORKDIR /opt/lakescore
COPY --from=build /opt/lakescore/.venv .venv
COPY --from=build /opt/lakescore/build/jars build/jars
COPY --from=build /opt/lakescore/build/env.sh build/env.sh
COPY spark-submit.sh ./
COPY conf/ conf/
COPY expectations/ expectations/
RUN chown lakescore:lakescore build
# conf/ and expectations/ are read from LAKESCORE_HOME (the package itself sits in the venv).
ENV LAKESCORE_HOME=/opt/lakescore \
    PATH=/opt/lakescore/.venv/bin:$PATH \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    PYSPARK_PYTHON=/opt/lakescore/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/lakescore/.venv/bin/python \
    PYTHONUNBUFFERED=1
USER 10001
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "jobs.pipeline", "--help"]
