'use strict'
// An HTTP front for the integrator-extension SDK, answering as its express wrapper does:
// GET /healthCheck, POST /function authenticated by the system token (Authorization header,
// else access_token in the body, else in the query), errors as {errors: [...]} with the SDK's
// status, a result as JSON (an empty body when the function returns nothing), and an HTML
// error page with status 500 when a function throws.
const http = require('http')
const { URL } = require('url')
const Extension = require('integrator-extension')
const connector = require('./connector')

const systemToken = process.env.EXTENSION_TOKEN
const connectorId = process.env.CONNECTOR_ID
const port = Number(process.env.PORT)
const extension = new Extension()

function send (res, status, body, headers) {
  const text = body === undefined ? '' : JSON.stringify(body)
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/json; charset=utf-8' }, headers))
  res.end(text)
}

function tokenOf (req, body, query) {
  const header = req.headers.authorization
  if (header) {
    const parts = header.split(' ')
    return parts.length === 2 && /^Bearer$/i.test(parts[0]) ? parts[1] : undefined
  }
  if (body && body.access_token) return body.access_token
  return query.get('access_token') || undefined
}

function handle (req, res, raw) {
  const url = new URL(req.url, 'http://localhost')
  if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/healthCheck')) {
    return send(res, 200, { success: true })
  }
  if (req.method !== 'POST' || url.pathname !== '/function') {
    return send(res, 404, { errors: [{ code: 'not_found', message: 'Cannot ' + req.method + ' ' + url.pathname }] })
  }
  let body
  try {
    body = raw ? JSON.parse(raw) : {}
  } catch (e) {
    return send(res, 400, { errors: [{ code: 'invalid_json', message: e.message }] })
  }
  if (tokenOf(req, body, url.searchParams) !== systemToken) {
    return send(res, 401, { errors: [{ code: 'unauthorized', message: 'Invalid system token.' }] },
      { 'WWW-Authenticate': 'invalid system token' })
  }
  try {
    extension.callFunction(body.options, body, function (err, result) {
      if (err) return send(res, err.statusCode, { errors: err.errors })
      return send(res, 200, result)
    })
  } catch (e) {
    res.writeHead(500, { 'Content-Type': 'text/html; charset=utf-8' })
    res.end('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n' +
      '</head>\n<body>\n<pre>' + String(e.stack).replace(/</g, '&lt;') + '</pre>\n</body>\n</html>\n')
  }
}

extension.loadConfiguration({ connectors: { [connectorId]: connector } }, function (err) {
  if (err) throw err
  http.createServer(function (req, res) {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', function (chunk) { raw += chunk })
    req.on('end', function () { handle(req, res, raw) })
  }).listen(port, '127.0.0.1', function () {
    console.log('extension listening on ' + port)
  })
})
