# One image for the API, the DICOM receiver, the worker and training:
# `radmatch serve | dicom-listen | worker | train`.
#
# A slim Python base is enough on GPU hosts: PyPI's Linux torch wheels bundle the CUDA runtime
# libraries, and the `gpu` extra brings FAISS's GPU build with its own. The host needs only the
# NVIDIA driver and container toolkit. On a host without a GPU:
#   docker build --build-arg FAISS_EXTRA=cpu -t radmatch .

FROM python:3.11-slim-bookworm AS build

ARG FAISS_EXTRA=gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies get a layer of their own: torch and the CUDA libraries are gigabytes, and a change
# to our code should not download them again. With only pyproject.toml and README.md here,
# `pip install .` installs the dependencies and an empty radmatch; the second puts the code in.
COPY pyproject.toml README.md ./
# DL3013 asks for pinned packages, but this is the project itself: pyproject.toml pins torch and
# bounds the rest, and hadolint only recognises a plain "." (without extras) as a local install.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[${FAISS_EXTRA}]"
COPY app ./app
COPY cli ./cli
COPY model ./model
COPY training ./training
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps .


FROM python:3.11-slim-bookworm

# A fixed uid, so that files in /data keep one owner across rebuilds and bind mounts can be
# prepared on the host. The home directory takes matplotlib's and torch's caches.
RUN groupadd --gid 10001 radmatch \
    && useradd --uid 10001 --gid radmatch --create-home --home-dir /srv/radmatch \
        --shell /usr/sbin/nologin radmatch \
    && mkdir /data \
    && chown radmatch:radmatch /data

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RADMATCH_DATA_DIR=/data

WORKDIR /srv/radmatch
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# Declared after /data is created and chowned: a new named volume copies the image's /data,
# owner included, so the non-root user can write to it.
VOLUME ["/data"]
# The API, and the DICOM receiver (`radmatch dicom-listen`).
EXPOSE 8000 11112

# The service loads its model and index before /readyz answers 200; start-period covers that.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["radmatch", "health"]

ENTRYPOINT ["radmatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
