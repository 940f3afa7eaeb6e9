#![cfg(target_arch = "wasm32")]
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn probe() {
    let g = js_sys::global();
    let f = js_sys::Function::new_no_args(
        "return (async () => {
          const out = [];
          out.push('FSH=' + typeof FileSystemHandle);
          out.push('proto.move=' + typeof FileSystemHandle.prototype.move);
          out.push('fileproto.move=' + typeof FileSystemFileHandle.prototype.move);
          const root = await navigator.storage.getDirectory();
          const d = await root.getDirectoryHandle('probe', {create: true});
          const h = await d.getFileHandle('a', {create: true});
          out.push('inst.move=' + typeof h.move);
          out.push('own=' + Object.getOwnPropertyNames(FileSystemHandle.prototype).join(','));
          out.push('ownf=' + Object.getOwnPropertyNames(FileSystemFileHandle.prototype).join(','));
          try { const w = await h.createWritable(); await w.write('AAA'); await w.close(); } catch (e) { out.push('w:' + e); }
          const b = await d.getFileHandle('b', {create: true});
          { const w = await b.createWritable(); await w.write('BBB'); await w.close(); }
          try { await h.move(d, 'b'); out.push('moved over'); } catch (e) { out.push('move over: ' + e.name + ' ' + e.message); }
          const names = []; for await (const [n] of d.entries()) names.push(n); out.push('names=' + names.join(','));
          try { out.push('b=' + await (await (await d.getFileHandle('b')).getFile()).text()); } catch (e) { out.push('b:' + e); }
          // abort then remove race
          const c = await d.getFileHandle('c', {create: true});
          const w = await c.createWritable(); await w.write('xx'); await w.abort();
          try { await d.removeEntry('c'); out.push('removed c'); } catch (e) { out.push('rm c: ' + e.name + ' ' + e.message); }
          await root.removeEntry('probe', {recursive: true});
          return out.join('\\n');
        })()",
    );
    let p: js_sys::Promise = f.call0(&g).unwrap().unchecked_into();
    let s = wasm_bindgen_futures::JsFuture::from(p).await.unwrap();
    web_sys::console::log_1(&s);
    panic!("{}", s.as_string().unwrap());
}
