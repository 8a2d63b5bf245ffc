// Client certificates (mTLS): what a verified certificate says about its holder, and whether it names a given
// pgwarden user. The TLS layer asks for a certificate without requiring one; only a certificate that chains to
// tls.client_ca (socket.authorized) is ever considered here.

import type tls from 'node:tls';

/** How a user's config says a certificate names it: by subject CN, or by any of its subject alternative names. */
export interface CertificateIdentity {
  readonly subjectCn: string | null;
  /** As OpenSSL prints them in subjectaltname: "email:alice@example.org", "DNS:…", "URI:…", "IP Address:…". */
  readonly san: readonly string[];
}

/** The verified client certificate of a session. */
export interface ClientCertificate {
  readonly subject: string;
  readonly cn: string | null;
  readonly san: readonly string[];
  readonly fingerprint256: string;
}

/** The client's certificate when it presented one that verified against tls.client_ca; null otherwise. */
export function verifiedClientCertificate(socket: tls.TLSSocket): ClientCertificate | null {
  if (!chainVerified(socket)) return null;
  const cert = socket.getPeerCertificate(false);
  if (!cert || !cert.raw) return null;
  const cnField = cert.subject?.CN as string | string[] | undefined;
  // A subject with several CNs is ambiguous: none of them identifies the holder.
  const cn = typeof cnField === 'string' ? cnField : null;
  return {
    subject: Object.entries(cert.subject ?? {})
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
      .join(', '),
    cn,
    san: cert.subjectaltname ? splitAltNames(cert.subjectaltname) : [],
    fingerprint256: cert.fingerprint256,
  };
}

/**
 * Whether OpenSSL verified the peer's chain against the context's CA. Node sets `socket.authorized` only on sockets
 * a tls.Server creates; pgwarden wraps accepted sockets itself (STARTTLS-style, after SSLRequest), so it asks the
 * TLS handle the same question tls.Server asks (`verifyError()`). Without a handle or a certificate: not verified.
 */
function chainVerified(socket: tls.TLSSocket): boolean {
  if (socket.authorized) return true;
  const handle = (socket as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  if (!handle || typeof handle.verifyError !== 'function') return false;
  const cert = socket.getPeerCertificate(false);
  if (!cert || !cert.raw) return false;
  return handle.verifyError() === null;
}

/**
 * Node prints subjectaltname as `DNS:a, email:b, URI:c`; a name that itself contains ", " is quoted in JSON
 * style by Node >= 17 (`DNS:"a, b"`), so split only outside quotes and unquote.
 */
export function splitAltNames(text: string): string[] {
  const names: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') quoted = !quoted;
    if (!quoted && ch === ',' && text[i + 1] === ' ') {
      names.push(current);
      current = '';
      i++;
      continue;
    }
    current += ch;
  }
  if (current.length > 0) names.push(current);
  return names.map(unquoteAltName);
}

function unquoteAltName(name: string): string {
  const colon = name.indexOf(':');
  if (colon < 0) return name;
  const value = name.slice(colon + 1);
  if (!value.startsWith('"')) return name;
  try {
    return name.slice(0, colon + 1) + String(JSON.parse(value));
  } catch {
    return name;
  }
}

/** True when the certificate names the user the way its config says. */
export function certificateNamesUser(cert: ClientCertificate, identity: CertificateIdentity): boolean {
  if (identity.subjectCn !== null && cert.cn === identity.subjectCn) return true;
  return identity.san.some((name) => cert.san.includes(name));
}
