#!/usr/bin/env bash
# SimpleDet's MXNet: MXNet 1.6 from source with SimpleDet's operators compiled in, installed into the row's
# environment, plus mxnext (SimpleDet's symbol helpers, not on the package index) at its 2019-08-19 commit.
# SimpleDet 9187a1's doc/INSTALL.md:88-108 describes the same; the nightly wheel it used
# (mxnet-cu101==1.6.0b20190820, https://1dv.alarge.space/...) is no longer available.
#
#   bash jobs/simpledet/build_mxnet.sh ENV_PREFIX SRC_DIR        (python -m launcher.env create impl=simpledet)
#
# Needs: internet (git clone), the conda environment ENV_PREFIX made from environment.yml, CUDA 10.1's nvcc and
# headers (CUDA_HOME, default /usr/local/cuda-10.1), gcc <= 8, NCCL for CUDA 10.1 (NCCL_HOME, optional if in
# CUDA_HOME), and SimpleDet's prepared work tree in $LAUNCHER_TREE (its operator_cxx/; the launcher sets it).
# NOT RUN IN THE LAUNCHER'S CI (no CUDA 10 toolkit, no GPU, no network there): a recipe, kept as data.
set -euo pipefail
ENV_PREFIX=${1:?usage: build_mxnet.sh ENV_PREFIX SRC_DIR}
SRC=${2:?usage: build_mxnet.sh ENV_PREFIX SRC_DIR}
TREE=${LAUNCHER_TREE:?set LAUNCHER_TREE to SimpleDet's prepared checkout (python -m launcher.env create does)}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-10.1}
# apache/mxnet master on 2019-08-20 (the nightly's date; its exact commit is not recorded): the last commit
# before 02:00 UTC that day; python/mxnet/libinfo.py says 1.6.0 there
MXNET_COMMIT=3dfb19a9804c589a6089453f01c7b491d6bda014
MXNEXT_COMMIT=d9af618988053f5fdd52bb1016901e2239479827
"$CUDA_HOME/bin/nvcc" --version | grep -q 'release 10\.1,' || { echo "need CUDA 10.1 in CUDA_HOME=$CUDA_HOME" >&2; exit 2; }
mkdir -p "$SRC"
if [ ! -d "$SRC/mxnet-simpledet/.git" ]; then
  git clone --recursive https://github.com/apache/mxnet "$SRC/mxnet-simpledet"
fi
cd "$SRC/mxnet-simpledet"
git checkout --quiet "$MXNET_COMMIT" && git submodule update --init --recursive
test "$(git rev-parse HEAD)" = "$MXNET_COMMIT"
cp -r "$TREE"/operator_cxx/* src/operator/        # overwrites contrib/proposal* and sync_batch_norm*: intended
rm -f src/operator/nn/group_norm*                  # clashes with SimpleDet's _contrib_GroupNorm
# proposal_mask_target.cc includes ../coco_api/common/maskApi.h: the pycocotools sdist ships common/maskApi.{c,h}
mkdir -p src/coco_api && "$ENV_PREFIX/bin/python" -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$SRC/pycocotools-src" "pycocotools==2.0.2"
tar -xzf "$SRC"/pycocotools-src/pycocotools-2.0.2.tar.gz -C "$SRC/pycocotools-src" && cp -r "$SRC"/pycocotools-src/pycocotools-2.0.2/common src/coco_api/
cat > config.mk.simpledet <<MK
USE_CUDA=1
USE_CUDA_PATH=$CUDA_HOME
USE_CUDNN=1
USE_NCCL=1
USE_OPENCV=0
USE_MKLDNN=0
USE_BLAS=openblas
USE_SIGNAL_HANDLER=1
USE_DIST_KVSTORE=0
CUDA_ARCH=-gencode arch=compute_70,code=sm_70
MK
cat make/config.mk config.mk.simpledet > config.mk
make -j"$(nproc)" ADD_CFLAGS="-I$ENV_PREFIX/include" ADD_LDFLAGS="-L$ENV_PREFIX/lib"
"$ENV_PREFIX/bin/python" -m pip install --no-deps -e python
"$ENV_PREFIX/bin/python" -m pip install --no-deps "git+https://github.com/RogerChern/mxnext@$MXNEXT_COMMIT"
"$ENV_PREFIX/bin/python" -c 'import mxnet as mx; [getattr(mx.sym.contrib, n) for n in ("Proposal_v3", "SigmoidCrossEntropy", "ROIAlign_v2")]; mx.sym.ProposalMaskTarget; print("mxnet", mx.__version__, "with SimpleDet operators")'
