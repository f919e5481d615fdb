'use strict'
// A SmartConnector written against the integrator-extension SDK. Every call is appended to
// $STATE_DIR/calls.log so tests can see what ran, in which order, with which options.
const fs = require('fs')
const path = require('path')

const stateDir = process.env.STATE_DIR

function record (name, options) {
  const seen = Object.assign({}, options)
  delete seen.bearerToken
  fs.appendFileSync(path.join(stateDir, 'calls.log'), JSON.stringify({ name: name, options: seen }) + '\n')
}

async function api (options, method, resource, body) {
  const response = await fetch(options.apiUrl + resource, {
    method: method,
    headers: { Authorization: 'Bearer ' + options.bearerToken, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!response.ok) throw new Error(method + ' ' + resource + ' answered ' + response.status)
  return response.status === 204 ? null : response.json()
}

module.exports = {
  installer: {
    connectorInstaller: function (options, callback) {
      record('connectorInstaller', options)
      return callback()
    },
    echoOptions: function (options, callback) {
      return callback(null, { success: true, options: options })
    },
    createConnection: function (options, callback) {
      record('createConnection', options)
      api(options, 'POST', '/connections', { type: 'http', name: 'JS', key: options.idempotencyKey })
        .then(function (connection) {
          callback(null, { success: true, stepsToUpdate: [{ name: options.stepName, _connectionId: connection._id }] })
        }, callback)
    },
    flakyStep: function (options, callback) {
      record('flakyStep', options)
      if (!fs.existsSync(path.join(stateDir, 'fixed'))) {
        const error = new Error('the store is not reachable yet')
        error.code = 'store_unreachable'
        return callback(error)
      }
      return callback(null, { success: true, stepsToUpdate: [] })
    },
    reportsFailure: function (options, callback) {
      record('reportsFailure', options)
      return callback(null, { success: false, message: 'licence expired' })
    },
    throwsNow: function (options) {
      record('throwsNow', options)
      throw new Error('bug in connector')
    },
    neverAnswers: function (options) {
      record('neverAnswers', options)
    },
    sharedName: function (options, callback) {
      record('sharedName', options)
      return callback(null, { success: true })
    }
  },
  uninstaller: {
    deleteConnection: function (options, callback) {
      record('deleteConnection', options)
      api(options, 'GET', '/integrations/' + options._integrationId)
        .then(function (integration) {
          const step = integration.install.find(function (s) { return s.name === options.stepName })
          return api(options, 'DELETE', '/connections/' + step._connectionId)
        })
        .then(function () { callback(null, { success: true }) }, callback)
    },
    noop: function (options, callback) {
      record('noop', options)
      return callback(null, { success: true })
    },
    connectorUninstaller: function (options, callback) {
      record('connectorUninstaller', options)
      return callback()
    }
  }
}
