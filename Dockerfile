# The replog host, statically linked (x86_64-unknown-linux-musl): no shell, no libc, no curl.
# The components are not in the image; docker-compose.yml mounts them read-only at /components.
#
# Build the binary first (from the repository root):
#   cargo build --release --target x86_64-unknown-linux-musl
FROM scratch
COPY target/x86_64-unknown-linux-musl/release/replog /replog
# The log lives in /data (DATA_DIR). A named volume mounted there starts with the image's
# contents and ownership, so this makes it writable for the unprivileged user below.
COPY --chown=65534:65534 host/image/data /data
USER 65534:65534
EXPOSE 8000 8001
ENTRYPOINT ["/replog"]
CMD ["--help"]
