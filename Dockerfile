# Riffle's image: every process (riffle run, api, notify, backup) from one wheel.
# Stage 1 builds the wheel exactly as .ci/wheel-check does (pip wheel --no-deps) and
# installs it with the pinned versions of constraints.txt into a virtualenv; stage 2
# copies that virtualenv onto a slim base and runs as an unprivileged user.
# Build: docker build -t riffle:0.1.0 .   (docs/deployment.md#the-image)

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY riffle ./riffle
COPY api ./api
COPY config ./config
COPY dataflows ./dataflows
COPY operators ./operators
COPY sinks ./sinks
COPY sources ./sources
RUN python -m venv /opt/riffle \
    && /opt/riffle/bin/pip wheel --no-deps -w /tmp/dist . \
    && /opt/riffle/bin/pip install -c constraints.txt "$(ls /tmp/dist/riffle-*.whl)[asn]" \
    && /opt/riffle/bin/riffle spec check

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/riffle/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
# Debian's Chromium prints exports and reports (api/render.py), as on the development
# machines; Debian's security updates replace its version, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 riffle \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin riffle
COPY --from=build /opt/riffle /opt/riffle
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 9464 9465 9466 2101
ENTRYPOINT ["riffle"]
CMD ["--help"]
