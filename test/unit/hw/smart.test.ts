import { expect } from 'chai';
import { parseSmartctlJson } from '../../../src/hw/smart';
import { HwError } from '../../../src/hw/errors';
import { fixture } from './fixtures';

describe('hw/smart: smartctl -j parser', () => {
  it('reads a failing ATA disk: FAILED, reallocated and pending sectors, hours, temperature', () => {
    const r = parseSmartctlJson(fixture('smartctl-ata-failing.json'));
    expect(r).to.include({
      device: '/dev/sdc',
      model: 'Hitachi HDS721050DLE630',
      serial: 'MSK423Y20S3HBC',
      available: true,
      passed: false,
      temperatureC: 25,
      reallocatedSectors: 1975,
      pendingSectors: 8,
      offlineUncorrectable: 0,
      powerOnHours: 65592,
      exitStatus: 216,
      health: 'failing',
    });
    expect(r.reasons).to.include('SMART overall health check FAILED');
    expect(r.reasons).to.include('8 sectors pending reallocation');
  });

  it('reads a healthy NVMe disk', () => {
    const r = parseSmartctlJson(fixture('smartctl-nvme-pass.json'));
    expect(r).to.include({ passed: true, temperatureC: 36, powerOnHours: 2401, mediaErrors: 0, criticalWarning: 0, reallocatedSectors: null, health: 'ok' });
    expect(r.reasons).to.deep.equal([]);
  });

  it('reads a health-only report', () => {
    const r = parseSmartctlJson(fixture('smartctl-health-only-pass.json'));
    expect(r).to.include({ passed: true, available: true, temperatureC: null, powerOnHours: null, health: 'ok' });
  });

  it('reports unknown health, with smartctl\'s own message, for devices without SMART (captured here)', () => {
    for (const f of ['smartctl-virtio-unsupported.json', 'smartctl-loop-unsupported.json']) {
      const r = parseSmartctlJson(fixture(f));
      expect(r.available, f).to.equal(false);
      expect(r.health, f).to.equal('unknown');
      expect(r.exitStatus, f).to.equal(1);
      expect(r.reasons[0], f).to.match(/Unable to detect device type/);
    }
  });

  it('warns on a few reallocated sectors or heat, fails on many', () => {
    const doc = (realloc: number, temp: number): string =>
      JSON.stringify({
        json_format_version: [1, 0],
        smartctl: { exit_status: 0 },
        smart_status: { passed: true },
        temperature: { current: temp },
        ata_smart_attributes: { table: [{ id: 5, raw: { value: realloc } }] },
      });
    expect(parseSmartctlJson(doc(0, 30)).health).to.equal('ok');
    expect(parseSmartctlJson(doc(3, 30))).to.include({ health: 'warning' });
    expect(parseSmartctlJson(doc(0, 60)).reasons).to.deep.equal(['running hot (60 °C)']);
    expect(parseSmartctlJson(doc(500, 30)).health).to.equal('failing');
  });

  it('rejects text that is not smartctl JSON with a clear error', () => {
    expect(() => parseSmartctlJson('smartctl 7.3 2022-02-28 r5338 [x86_64-linux]')).to.throw(HwError, /not JSON.*-j/).with.property('code', 'CAIRN_HW_PARSE');
    expect(() => parseSmartctlJson('{"foo": 1}')).to.throw(HwError, /not smartctl output/);
    expect(() => parseSmartctlJson('[1,2]')).to.throw(HwError, /not smartctl output/);
    expect(() => parseSmartctlJson('{"smartctl":{}, "ata_smart_attributes": {"table": "nope"}, "temperature": "hot"}')).to.not.throw();
  });
});
