# One image for api, worker, reconciler and migrate. CUDA comes from the torch wheel
# the image installs (pin a CUDA build with TORCH_INDEX on GPU hosts).
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX=""
WORKDIR /app
# A C++ compiler: torch.compile's CPU code and the optimizers' native CPU kernels
# are built on the worker (once, then cached).
RUN apt-get update && apt-get install -y --no-install-recommends g++ \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini ./
COPY optimizers ./optimizers
COPY api_schemas ./api_schemas
COPY service ./service
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir ${TORCH_INDEX:+--index-url $TORCH_INDEX} "$TORCH_SPEC" \
 && pip install --no-cache-dir .
ENV OPTSERVE_DATA_DIR=/data
ENTRYPOINT ["optserve"]
