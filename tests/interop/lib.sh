# shellcheck shell=bash
# Shared by tests/interop/run and tests/interop/install-tools (sourced).

# find_aws: succeeds when a working `aws` is on PATH, after adding the
# directories where pip puts console scripts (the interpreter's own, then the
# user's) when it is not there yet. A pyenv shim for a Python version that
# lacks awscli fails `aws --version`, so the check runs the command.
find_aws() {
    if aws --version >/dev/null 2>&1; then
        return 0
    fi
    local dir
    for dir in \
        "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)" \
        "$(python3 -m site --user-base 2>/dev/null || true)/bin"; do
        if [ -n "$dir" ] && [ "$dir" != "/bin" ] && [ -x "$dir/aws" ]; then
            PATH="$dir:$PATH"
            export PATH
            if aws --version >/dev/null 2>&1; then
                return 0
            fi
        fi
    done
    return 1
}
