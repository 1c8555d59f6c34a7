#!/usr/bin/env bash
# The mailhop test lab: real Postfix and Dovecot on loopback, for the integration tests.
#
#   scripts/lab.sh up      install (if missing), configure, start; idempotent and quick
#   scripts/lab.sh down    stop both daemons
#   scripts/lab.sh status  what runs, which ports answer, where lab.json is
#
# Everything the lab owns lives under LAB_DIR (/var/lib/mailhop-lab): the test CA and
# certificates, Dovecot's configuration and users, Postfix's lookup tables, the Maildirs,
# the logs and lab.json, which tells the test suite ports, users and paths. The repository
# gets a symlink .lab/lab.json -> LAB_DIR/lab.json so `MAILHOP_LAB=$PWD/.lab` finds it.
#
# Changes outside LAB_DIR, all for this test machine only (see docs/lab.md):
#   /etc/postfix/main.cf and master.cf   owned and overwritten by this script
#   system user and group "mailhoplab"   owns the Maildirs (Postfix virtual + Dovecot)
#   /var/spool/postfix/private/auth      Dovecot's SASL socket for Postfix
#   /usr/sbin/policy-rc.d                only while apt runs, so no package starts a daemon
#
# Postfix must be a faithful witness: it delivers what the client sent and repairs
# nothing (no added From/Date/Message-ID, Bcc kept, bare LF refused), and no mail ever
# leaves the machine (every non-local transport is error:).
set -euo pipefail

LAB_DIR=/var/lib/mailhop-lab
REPO_DIR=$(cd "$(dirname "$0")/.." && pwd)
LAB_USER=mailhoplab
HOST4=127.0.0.1
HOST6=::1
# Dovecot also listens here. A client connecting to 127.0.0.2 comes from 127.0.0.1, and
# Dovecot only trusts a connection as "secured" when remote IP == local IP: so on this
# address it refuses plaintext login before TLS exactly as over a real network, while
# on 127.0.0.1 / ::1 it allows it (by design, not configurable in 2.3).
HOST_STRICT=127.0.0.2
HOSTNAME_FQDN=mail.example.test
TLS_SERVER_NAME=localhost
DOMAINS=(example.test example.org)
# 300 MiB: a 200 MB benchmark message plus base64 growth fits, nothing unbounded does.
MESSAGE_SIZE_LIMIT=314572800
SASL_MECHANISMS="plain login cram-md5 scram-sha-1 scram-sha-256"
PORT_SMTP=25
PORT_SUBMISSION=587
PORT_SUBMISSIONS=465
PORT_IMAP=143
PORT_IMAPS=993
PORT_POP3=110
PORT_POP3S=995
ALL_PORTS=("$PORT_SMTP" "$PORT_SUBMISSION" "$PORT_SUBMISSIONS" "$PORT_IMAP" "$PORT_IMAPS"
    "$PORT_POP3" "$PORT_POP3S")
# How long `up` waits for every port to accept connections before it gives up.
PORT_WAIT_SECONDS=30

# Test users: login name, password, mailbox address. dave's password holds a space, quotes,
# a backslash and a hash on purpose (quoting bugs); use alice for plain cases.
# fetchbench (bench/fetch.py), fetchsoak (the fetch kill -9 soak) and flushbench
# (bench/queue_flush.py's real-server rounds) each belong to one user of the lab only:
# nothing else appends to or deletes from their mailboxes.
USER_NAMES=(alice bob carol dave erin postmaster fetchbench fetchsoak flushbench)
USER_PASSWORDS=(alice-lab-password bob-lab-password carol-lab-password
    'dave "quoted" pass\word #1' erin-lab-password postmaster-lab-password
    fetchbench-lab-password fetchsoak-lab-password flushbench-lab-password)
USER_ADDRESSES=(alice@example.test bob@example.test carol@example.test dave@example.test
    erin@example.org postmaster@example.test fetchbench@example.test fetchsoak@example.test
    flushbench@example.test)

REQUIRED_PACKAGES=(postfix dovecot-imapd dovecot-pop3d openssl)
# msmtp, never msmtp-mta: that one provides /usr/sbin/sendmail and conflicts with postfix.
# git send-email needs Mail::Address (libmailtools-perl), only a Recommends of git-email.
# fetchmail and getmail6: the reference retrievers bench/fetch.py measures mailhop against.
OPTIONAL_PACKAGES=(msmtp s-nail bsd-mailx cron swaks git-email libmailtools-perl mutt
    fetchmail getmail6)

TLS_DIR=$LAB_DIR/tls
MAIL_DIR=$LAB_DIR/mail
LOG_DIR=$LAB_DIR/log
RUN_DIR=$LAB_DIR/run
POSTFIX_TABLES=$LAB_DIR/postfix
DOVECOT_DIR=$LAB_DIR/dovecot
DOVECOT_CONF=$DOVECOT_DIR/dovecot.conf
DOVECOT_BASE=$RUN_DIR/dovecot
POSTFIX_LOG=$LOG_DIR/postfix.log
DOVECOT_LOG=$LOG_DIR/dovecot.log
# What `postfix start` and `dovecot` print (config errors) before they log elsewhere.
START_LOG=$LOG_DIR/start.log
LAB_JSON=$LAB_DIR/lab.json

say() { printf 'lab.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and binds ports < 1024)"
}

have_ipv6_loopback() {
    grep -qs '^00000000000000000000000000000001 .* lo$' /proc/net/if_inet6
}

package_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -q "$@"
}

# --- packages -------------------------------------------------------------------------

install_packages() {
    local missing_required=() missing_optional=() failed=() package
    for package in "${REQUIRED_PACKAGES[@]}"; do
        package_installed "$package" || missing_required+=("$package")
    done
    for package in "${OPTIONAL_PACKAGES[@]}"; do
        package_installed "$package" || missing_optional+=("$package")
    done
    [ ${#missing_required[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ] && return 0

    # Without systemd, package scripts start daemons through invoke-rc.d: a Debian-default
    # Dovecot on 0.0.0.0:143 would take our ports. policy-rc.d exit 101 forbids that.
    local own_policy=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# temporary, from mailhop scripts/lab.sh\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=yes
    fi
    # "No configuration": this script writes main.cf itself.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # A fresh machine has no package lists yet (apt-get install then finds nothing).
    say "updating the package lists"
    DEBIAN_FRONTEND=noninteractive apt-get update -q || say "apt-get update failed; trying anyway"

    if [ ${#missing_required[@]} -gt 0 ]; then
        say "installing ${missing_required[*]}"
        if ! apt_install "${missing_required[@]}"; then
            [ "$own_policy" = yes ] && rm -f /usr/sbin/policy-rc.d
            die "could not install required packages: ${missing_required[*]}"
        fi
    fi
    if [ ${#missing_optional[@]} -gt 0 ]; then
        say "installing ${missing_optional[*]}"
        if ! apt_install "${missing_optional[@]}"; then
            # One bad package must not cost us the others: retry one by one.
            for package in "${missing_optional[@]}"; do
                package_installed "$package" || apt_install "$package" || failed+=("$package")
            done
        fi
    fi
    [ "$own_policy" = yes ] && rm -f /usr/sbin/policy-rc.d
    if [ ${#failed[@]} -gt 0 ]; then
        say "WARNING: optional packages not installed (tests that drive them will skip): ${failed[*]}"
    fi
}

# --- files ----------------------------------------------------------------------------

CHANGED_POSTFIX=no
CHANGED_DOVECOT=no
# A new lab user only changes lookup tables: Postfix re-reads them on `postfix reload`
# and Dovecot re-reads a changed passwd-file by itself, so neither daemon is stopped
# under a test run that is using the lab.
CHANGED_POSTFIX_TABLES=no

# install_if_changed SOURCE DEST MODE OWNER: move SOURCE over DEST only when the bytes
# differ, so an unchanged lab restarts nothing. Returns 0 when DEST changed.
install_if_changed() {
    local source=$1 dest=$2 mode=$3 owner=$4
    if [ -f "$dest" ] && cmp -s "$source" "$dest"; then
        rm -f "$source"
        chmod "$mode" "$dest"
        chown "$owner" "$dest"
        return 1
    fi
    chmod "$mode" "$source"
    chown "$owner" "$source"
    mv -f "$source" "$dest"
    return 0
}

ensure_user() {
    if ! getent passwd "$LAB_USER" >/dev/null; then
        say "creating system user $LAB_USER (owns the lab Maildirs)"
        useradd --system --user-group --home-dir "$MAIL_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "mailhop test lab mailboxes" "$LAB_USER"
    fi
}

ensure_directories() {
    install -d -m 755 -o root -g root "$LAB_DIR" "$LOG_DIR" "$RUN_DIR" "$POSTFIX_TABLES" \
        "$DOVECOT_DIR" "$TLS_DIR"
    install -d -m 750 -o "$LAB_USER" -g "$LAB_USER" "$MAIL_DIR"
    local i domain local_part
    for i in "${!USER_ADDRESSES[@]}"; do
        local_part=${USER_ADDRESSES[$i]%@*}
        domain=${USER_ADDRESSES[$i]#*@}
        install -d -m 700 -o "$LAB_USER" -g "$LAB_USER" "$MAIL_DIR/$domain" \
            "$MAIL_DIR/$domain/$local_part" "$MAIL_DIR/$domain/$local_part/new" \
            "$MAIL_DIR/$domain/$local_part/cur" "$MAIL_DIR/$domain/$local_part/tmp"
    done
    # Readable logs: tests that run unprivileged may grep them (e.g. for leaked secrets).
    local log
    for log in "$POSTFIX_LOG" "$DOVECOT_LOG" "$START_LOG"; do
        [ -e "$log" ] || install -m 644 /dev/null "$log"
    done
}

# --- TLS ------------------------------------------------------------------------------

write_openssl_config() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Generated by mailhop scripts/lab.sh: extensions for the lab's test certificates.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:localhost, DNS:$HOSTNAME_FQDN, IP:127.0.0.1, IP:$HOST_STRICT, IP:::1
[wrong_host_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:wrong-host.invalid
[self_signed_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = DNS:localhost, DNS:$HOSTNAME_FQDN, IP:127.0.0.1, IP:$HOST_STRICT, IP:::1
[ca]
default_ca = lab_ca
[lab_ca]
database = $TLS_DIR/ca-db/index.txt
new_certs_dir = $TLS_DIR/ca-db
serial = $TLS_DIR/ca-db/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
EOF
    # New names or extensions: every certificate is made again.
    if install_if_changed "$tmp" "$TLS_DIR/openssl.cnf" 644 root:root; then
        rm -f "$TLS_DIR"/server.crt "$TLS_DIR"/wrong-host.crt "$TLS_DIR"/expired.crt \
            "$TLS_DIR"/self-signed.crt
    fi
}

new_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

random_serial() { echo "0x$(openssl rand -hex 16)"; }

# sign_leaf NAME CN EXTENSION: NAME.key + NAME.crt signed by the lab CA, valid 400 days.
sign_leaf() {
    local name=$1 common_name=$2 extension=$3
    new_key "$TLS_DIR/$name.key"
    openssl req -new -key "$TLS_DIR/$name.key" -subj "/CN=$common_name" \
        -out "$TLS_DIR/$name.csr"
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
        -set_serial "$(random_serial)" -days 400 -sha256 \
        -extfile "$TLS_DIR/openssl.cnf" -extensions "$extension" -out "$TLS_DIR/$name.crt" \
        2>/dev/null
    rm -f "$TLS_DIR/$name.csr"
    chmod 644 "$TLS_DIR/$name.key" "$TLS_DIR/$name.crt"
}

# A certificate signed by the lab CA whose validity ended long ago; `openssl x509 -days`
# cannot go backwards, `openssl ca -startdate/-enddate` can.
sign_expired() {
    rm -rf "$TLS_DIR/ca-db"
    mkdir -p "$TLS_DIR/ca-db"
    : >"$TLS_DIR/ca-db/index.txt"
    openssl rand -hex 16 >"$TLS_DIR/ca-db/serial"
    new_key "$TLS_DIR/expired.key"
    openssl req -new -key "$TLS_DIR/expired.key" -subj "/CN=localhost" \
        -out "$TLS_DIR/expired.csr"
    openssl ca -batch -config "$TLS_DIR/openssl.cnf" -extfile "$TLS_DIR/openssl.cnf" \
        -extensions server_ext -startdate 20200101000000Z -enddate 20200201000000Z \
        -cert "$TLS_DIR/ca.crt" -keyfile "$TLS_DIR/ca.key" -notext \
        -in "$TLS_DIR/expired.csr" -out "$TLS_DIR/expired.crt" 2>/dev/null
    rm -rf "$TLS_DIR/expired.csr" "$TLS_DIR/ca-db"
    chmod 644 "$TLS_DIR/expired.key" "$TLS_DIR/expired.crt"
}

valid_for_a_day() {
    [ -s "$1" ] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1
}

signed_by_ca() {
    openssl verify -CAfile "$TLS_DIR/ca.crt" "$1" >/dev/null 2>&1
}

ensure_certificates() {
    write_openssl_config
    if ! valid_for_a_day "$TLS_DIR/ca.crt" || [ ! -s "$TLS_DIR/ca.key" ]; then
        say "creating the lab test CA"
        new_key "$TLS_DIR/ca.key"
        chmod 600 "$TLS_DIR/ca.key"
        openssl req -new -x509 -key "$TLS_DIR/ca.key" -subj "/CN=mailhop lab test CA" \
            -days 3650 -sha256 -set_serial "$(random_serial)" -config "$TLS_DIR/openssl.cnf" \
            -extensions ca_ext -out "$TLS_DIR/ca.crt"
        chmod 644 "$TLS_DIR/ca.crt"
        rm -f "$TLS_DIR"/server.crt "$TLS_DIR"/wrong-host.crt "$TLS_DIR"/expired.crt
    fi
    if ! valid_for_a_day "$TLS_DIR/server.crt" || ! signed_by_ca "$TLS_DIR/server.crt"; then
        say "creating the server certificate"
        sign_leaf server "$HOSTNAME_FQDN" server_ext
        CHANGED_POSTFIX=yes
        CHANGED_DOVECOT=yes
    fi
    if ! valid_for_a_day "$TLS_DIR/wrong-host.crt" || ! signed_by_ca "$TLS_DIR/wrong-host.crt"
    then
        sign_leaf wrong-host wrong-host.invalid wrong_host_ext
    fi
    [ -s "$TLS_DIR/expired.crt" ] || sign_expired
    if ! valid_for_a_day "$TLS_DIR/self-signed.crt"; then
        new_key "$TLS_DIR/self-signed.key"
        openssl req -new -x509 -key "$TLS_DIR/self-signed.key" -subj "/CN=localhost" \
            -days 400 -sha256 -set_serial "$(random_serial)" -config "$TLS_DIR/openssl.cnf" \
            -extensions self_signed_ext -out "$TLS_DIR/self-signed.crt"
        chmod 644 "$TLS_DIR/self-signed.key" "$TLS_DIR/self-signed.crt"
    fi
}

# --- Postfix --------------------------------------------------------------------------

write_postfix_config() {
    local uid gid interfaces protocols networks tmp i domain local_part
    uid=$(id -u "$LAB_USER")
    gid=$(id -g "$LAB_USER")
    if have_ipv6_loopback; then
        interfaces="$HOST4, [$HOST6]"; protocols=all; networks="127.0.0.0/8, [::1]/128"
    else
        interfaces=$HOST4; protocols=ipv4; networks=127.0.0.0/8
    fi

    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Managed by mailhop scripts/lab.sh for the TEST LAB; rewritten by every \`lab.sh up\`.
# Loopback only, nothing ever leaves, and Postfix repairs nothing a client sends.
compatibility_level = 3.6
myhostname = $HOSTNAME_FQDN
mydomain = example.test
myorigin = \$mydomain
smtpd_banner = \$myhostname ESMTP mailhop-lab
biff = no
inet_interfaces = $interfaces
inet_protocols = $protocols
# Listed so anvil's rate limits exempt the test suite; never used to permit relaying.
mynetworks = $networks
maillog_file = $POSTFIX_LOG

# --- no outbound mail at all: every transport that could leave is an error
mydestination =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:5.1.1 local(8) delivery is disabled in the mailhop lab
default_transport = error:5.7.1 outbound mail is disabled in the mailhop lab
relay_transport = error:5.7.1 outbound mail is disabled in the mailhop lab
transport_maps =

# --- the test mailboxes: Maildirs under $MAIL_DIR/DOMAIN/USER/
virtual_mailbox_domains = ${DOMAINS[*]}
virtual_mailbox_base = $MAIL_DIR
virtual_mailbox_maps = texthash:$POSTFIX_TABLES/mailboxes
virtual_alias_maps = texthash:$POSTFIX_TABLES/aliases
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
recipient_delimiter = +
# Explicit so a 200 MB benchmark message fits; the Maildir limits must not be smaller.
message_size_limit = $MESSAGE_SIZE_LIMIT
virtual_mailbox_limit = 0
mailbox_size_limit = 0

# --- a faithful witness: keep what the client sent, add nothing, fix nothing
message_drop_headers = content-length
local_header_rewrite_clients =
remote_header_rewrite_domain =
always_add_missing_headers = no
undisclosed_recipients_header =
# A bare LF is a client bug we must see, not have normalised away (also from loopback).
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
smtpd_forbid_unauth_pipelining = yes

# --- restrictions: 25 takes mail for the lab domains only; 465/587 require AUTH
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:$POSTFIX_TABLES/recipient_access
smtpd_client_restrictions =
smtpd_sender_restrictions =

# --- TLS and SASL (Dovecot)
smtpd_tls_cert_file = $TLS_DIR/server.crt
smtpd_tls_key_file = $TLS_DIR/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = no
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_authenticated_header = no
broken_sasl_auth_clients = no

# --- speed: tests provoke errors on purpose and must not sleep; no DNS on an offline box
smtpd_error_sleep_time = 0
in_flow_delay = 0
smtpd_peername_lookup = no
EOF
    install_if_changed "$tmp" /etc/postfix/main.cf 644 root:root && CHANGED_POSTFIX=yes

    tmp=$(mktemp)
    cat >"$tmp" <<'EOF'
# Managed by mailhop scripts/lab.sh for the TEST LAB; rewritten by every `lab.sh up`.
# No chroot (nothing is copied into /var/spool/postfix without an init script) and no
# smtp/lmtp client services: even a wrong transport setting cannot send mail out.
# service type  private unpriv  chroot  wakeup  maxproc command + args
25        inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/smtp
587       inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
465       inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    install_if_changed "$tmp" /etc/postfix/master.cf 644 root:root && CHANGED_POSTFIX=yes

    tmp=$(mktemp)
    {
        echo "# Managed by mailhop scripts/lab.sh: address -> Maildir (relative to the base)."
        for i in "${!USER_ADDRESSES[@]}"; do
            local_part=${USER_ADDRESSES[$i]%@*}
            domain=${USER_ADDRESSES[$i]#*@}
            echo "${USER_ADDRESSES[$i]} $domain/$local_part/"
        done
    } >"$tmp"
    install_if_changed "$tmp" "$POSTFIX_TABLES/mailboxes" 644 root:root \
        && CHANGED_POSTFIX_TABLES=yes

    tmp=$(mktemp)
    cat >"$tmp" <<'EOF'
# Managed by mailhop scripts/lab.sh: RFC 5321 4.5.1 role addresses.
abuse@example.test postmaster@example.test
postmaster@example.org postmaster@example.test
EOF
    install_if_changed "$tmp" "$POSTFIX_TABLES/aliases" 644 root:root && CHANGED_POSTFIX=yes

    tmp=$(mktemp)
    cat >"$tmp" <<'EOF'
# Managed by mailhop scripts/lab.sh: recipients that fail on purpose at RCPT time.
tempfail@example.test 451 4.3.0 mailhop lab: temporary failure on purpose
permfail@example.test 550 5.1.1 mailhop lab: permanent failure on purpose
EOF
    install_if_changed "$tmp" "$POSTFIX_TABLES/recipient_access" 644 root:root \
        && CHANGED_POSTFIX=yes
    return 0
}

postfix_running() { postfix status >/dev/null 2>&1; }

start_postfix() {
    if postfix_running && [ "$CHANGED_POSTFIX" = yes ]; then
        # inet_interfaces changes need a full restart, not a reload; it takes a second.
        say "Postfix configuration changed: restarting"
        postfix stop </dev/null >>"$START_LOG" 2>&1 || true
        wait_postfix_stopped
    fi
    if ! postfix_running; then
        postfix check || die "postfix check failed (see $POSTFIX_LOG)"
        say "starting Postfix"
        # Daemons must not inherit our stdout/stderr: a caller's pipe (| tee, CI log
        # capture) would then never see end-of-file.
        postfix start </dev/null >>"$START_LOG" 2>&1 \
            || die "postfix start failed (see $START_LOG and $POSTFIX_LOG)"
    elif [ "$CHANGED_POSTFIX_TABLES" = yes ]; then
        say "Postfix tables changed: reloading"
        postfix reload </dev/null >>"$START_LOG" 2>&1 || die "postfix reload failed"
    fi
}

wait_postfix_stopped() {
    local tries=0
    while postfix_running; do
        tries=$((tries + 1))
        [ $tries -le 100 ] || die "Postfix did not stop within 10 s"
        sleep 0.1
    done
}

# --- Dovecot --------------------------------------------------------------------------

write_dovecot_config() {
    local listen tmp i
    listen="$HOST4, $HOST_STRICT"
    have_ipv6_loopback && listen="$listen, $HOST6"
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
# Managed by mailhop scripts/lab.sh for the TEST LAB; rewritten by every \`lab.sh up\`.
# Its own instance (base_dir, state_dir): the Debian /etc/dovecot setup is not used.
protocols = imap pop3
listen = $listen
base_dir = $DOVECOT_BASE
state_dir = $DOVECOT_DIR/state
instance_name = mailhop-lab
log_path = $DOVECOT_LOG
auth_verbose = yes
login_greeting = mailhop-lab ready.

# Plain passwords in passwd-file let Dovecot 2.3 serve every mechanism, SCRAM included.
auth_mechanisms = $SASL_MECHANISMS
# "alice" logs in as alice@example.test.
auth_default_realm = example.test
# Tests provoke bad logins on purpose; the default 2 s penalty only slows them down.
auth_failure_delay = 0
disable_plaintext_auth = yes

ssl = yes
ssl_cert = <$TLS_DIR/server.crt
ssl_key = <$TLS_DIR/server.key
ssl_min_protocol = TLSv1.2

mail_location = maildir:$MAIL_DIR/%d/%n
first_valid_uid = $(id -u "$LAB_USER")
last_valid_uid = $(id -u "$LAB_USER")
mail_max_userip_connections = 100
pop3_uidl_format = %08Xu%08Xv
namespace inbox {
  inbox = yes
}

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVECOT_DIR/users
}
userdb {
  driver = static
  args = uid=$LAB_USER gid=$LAB_USER home=$MAIL_DIR/%d/%n
}

service imap-login {
  inet_listener imap {
    port = $PORT_IMAP
  }
  inet_listener imaps {
    port = $PORT_IMAPS
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $PORT_POP3
  }
  inet_listener pop3s {
    port = $PORT_POP3S
    ssl = yes
  }
}
# Postfix's SASL (smtpd_sasl_path = private/auth, relative to its queue directory).
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
EOF
    install_if_changed "$tmp" "$DOVECOT_CONF" 644 root:root && CHANGED_DOVECOT=yes

    tmp=$(mktemp)
    for i in "${!USER_ADDRESSES[@]}"; do
        printf '%s:{PLAIN}%s::::::\n' "${USER_ADDRESSES[$i]}" "${USER_PASSWORDS[$i]}"
    done >"$tmp"
    install_if_changed "$tmp" "$DOVECOT_DIR/users" 640 root:dovecot || true
    install -d -m 750 -o root -g root "$DOVECOT_DIR/state"
    return 0
}

dovecot_pid() {
    local pid
    [ -s "$DOVECOT_BASE/master.pid" ] || return 1
    pid=$(cat "$DOVECOT_BASE/master.pid")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

dovecot_running() { dovecot_pid >/dev/null; }

stop_dovecot() {
    dovecot_running || return 0
    doveadm -c "$DOVECOT_CONF" stop </dev/null >>"$START_LOG" 2>&1 || true
    local tries=0
    while dovecot_running; do
        tries=$((tries + 1))
        [ $tries -le 100 ] || die "Dovecot did not stop within 10 s"
        sleep 0.1
    done
}

start_dovecot() {
    if dovecot_running && [ "$CHANGED_DOVECOT" = yes ]; then
        say "Dovecot configuration changed: restarting"
        stop_dovecot
    fi
    if ! dovecot_running; then
        say "starting Dovecot"
        dovecot -c "$DOVECOT_CONF" </dev/null >>"$START_LOG" 2>&1 \
            || die "dovecot failed to start (see $START_LOG and $DOVECOT_LOG)"
    fi
}

# --- ports ----------------------------------------------------------------------------

port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${2:-$HOST4}" "$1" 2>/dev/null
}

wait_for_ports() {
    local deadline=$((SECONDS + PORT_WAIT_SECONDS)) port closed
    while :; do
        closed=()
        for port in "${ALL_PORTS[@]}"; do
            port_open "$port" || closed+=("$port")
        done
        for port in "$PORT_IMAP" "$PORT_POP3"; do
            port_open "$port" "$HOST_STRICT" || closed+=("$HOST_STRICT:$port")
        done
        [ ${#closed[@]} -eq 0 ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            say "ports still closed after ${PORT_WAIT_SECONDS}s: ${closed[*]}"
            say "last Postfix log lines:"; tail -n 15 "$POSTFIX_LOG" >&2 || true
            say "last Dovecot log lines:"; tail -n 15 "$DOVECOT_LOG" >&2 || true
            die "the lab did not come up"
        fi
        sleep 0.2
    done
}

# --- lab.json -------------------------------------------------------------------------

write_lab_json() {
    local tmp host6=""
    have_ipv6_loopback && host6=$HOST6
    tmp=$(mktemp)
    # python3 does the JSON quoting (dave's password holds quotes and a backslash).
    LAB_PASSWORDS=$(printf '%s\n' "${USER_PASSWORDS[@]}") \
    LAB_NAMES="${USER_NAMES[*]}" LAB_ADDRESSES="${USER_ADDRESSES[*]}" \
    LAB_HOST6=$host6 python3 - "$tmp" <<EOF
import json, os, sys
names = os.environ["LAB_NAMES"].split()
addresses = os.environ["LAB_ADDRESSES"].split()
passwords = os.environ["LAB_PASSWORDS"].split("\n")
tls = "$TLS_DIR"
mail = "$MAIL_DIR"
users = []
for name, address, password in zip(names, addresses, passwords, strict=True):
    local_part, domain = address.split("@")
    users.append({"name": name, "login": address, "password": password,
                  "address": address, "maildir": f"{mail}/{domain}/{local_part}"})
data = {
    "schema": 1,
    "host": "$HOST4",
    "host6": os.environ["LAB_HOST6"] or None,
    "dovecot_strict_host": "$HOST_STRICT",
    "hostname": "$HOSTNAME_FQDN",
    "tls_server_name": "$TLS_SERVER_NAME",
    "ports": {"smtp": $PORT_SMTP, "submission": $PORT_SUBMISSION,
              "submissions": $PORT_SUBMISSIONS, "imap": $PORT_IMAP, "imaps": $PORT_IMAPS,
              "pop3": $PORT_POP3, "pop3s": $PORT_POP3S},
    "ca_file": f"{tls}/ca.crt",
    "server_cert": {"cert": f"{tls}/server.crt", "key": f"{tls}/server.key"},
    "bad_certs": {
        "expired": {"cert": f"{tls}/expired.crt", "key": f"{tls}/expired.key"},
        "wrong_host": {"cert": f"{tls}/wrong-host.crt", "key": f"{tls}/wrong-host.key"},
        "self_signed": {"cert": f"{tls}/self-signed.crt", "key": f"{tls}/self-signed.key"},
    },
    "domains": "${DOMAINS[*]}".split(),
    "users": users,
    "special_recipients": {"tempfail": "tempfail@example.test",
                           "permfail": "permfail@example.test"},
    "sasl_mechanisms": "$SASL_MECHANISMS".upper().split(),
    "mail_dir": mail,
    "logs": {"postfix": "$POSTFIX_LOG", "dovecot": "$DOVECOT_LOG"},
    "message_size_limit": $MESSAGE_SIZE_LIMIT,
}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")
EOF
    install_if_changed "$tmp" "$LAB_JSON" 644 root:root || true
    # The repository's view: test.sh exports MAILHOP_LAB=\$PWD/.lab (a directory).
    mkdir -p "$REPO_DIR/.lab"
    ln -sfn "$LAB_JSON" "$REPO_DIR/.lab/lab.json"
}

# --- commands -------------------------------------------------------------------------

cmd_up() {
    need_root
    install_packages
    ensure_user
    ensure_directories
    ensure_certificates
    write_postfix_config
    write_dovecot_config
    # Dovecot first: Postfix's SASL socket comes from it.
    start_dovecot
    start_postfix
    wait_for_ports
    write_lab_json
    say "lab is up: $LAB_JSON (MAILHOP_LAB=$REPO_DIR/.lab)"
}

cmd_down() {
    need_root
    if command -v postfix >/dev/null && postfix_running; then
        say "stopping Postfix"
        postfix stop </dev/null >>"$START_LOG" 2>&1 || true
        wait_postfix_stopped
    fi
    if command -v doveadm >/dev/null && dovecot_running; then
        say "stopping Dovecot"
        stop_dovecot
    fi
    say "lab is down (state kept in $LAB_DIR)"
}

cmd_status() {
    local status=0 port
    if command -v postfix >/dev/null && postfix_running; then
        echo "postfix: running"
    else
        echo "postfix: stopped"; status=1
    fi
    if dovecot_running; then
        echo "dovecot: running (pid $(dovecot_pid))"
    else
        echo "dovecot: stopped"; status=1
    fi
    for port in "${ALL_PORTS[@]}"; do
        if port_open "$port"; then echo "port $port: open"; else echo "port $port: closed"; status=1; fi
    done
    for port in "$PORT_IMAP" "$PORT_POP3"; do
        if port_open "$port" "$HOST_STRICT"; then
            echo "port $HOST_STRICT:$port: open"
        else
            echo "port $HOST_STRICT:$port: closed"; status=1
        fi
    done
    if [ -f "$LAB_JSON" ]; then echo "lab.json: $LAB_JSON"; else echo "lab.json: missing"; fi
    return $status
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 64 ;;
esac
