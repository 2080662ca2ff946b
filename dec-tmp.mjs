import sharp from 'sharp';
import { readFileSync, readdirSync } from 'node:fs';
import { decodeImage } from '@graft/vision';
const dir='../shared/datasets/clothing-small/dress/';
const small = readdirSync(dir).slice(0,64).map(f=>new Uint8Array(readFileSync(dir+f)));
// 12 MP: upscale a photo to 4000x3000 and add fine noise so it compresses like a phone photo
async function big(src, seed){
  const {data} = await sharp(src).resize(4000,3000,{fit:'fill'}).raw().toBuffer({resolveWithObject:true});
  let s=seed; for (let i=0;i<data.length;i++){ s=(s*1103515245+12345)>>>0; const n=((s>>>24)&15)-8; const v=data[i]+n; data[i]=v<0?0:v>255?255:v; }
  return new Uint8Array(await sharp(data,{raw:{width:4000,height:3000,channels:3}}).jpeg({quality:90}).toBuffer());
}
let t=performance.now(); const bigs=[]; for (let i=0;i<4;i++) bigs.push(await big(small[i], i+1)); console.log('gen ms/each', ((performance.now()-t)/4).toFixed(0), 'sizes MB', bigs.map(b=>(b.length/1e6).toFixed(1)).join(','));
async function rate(imgs, par, label){
  const t0=performance.now(); let n=0;
  for (let i=0;i<imgs.length;i+=par){ await Promise.all(imgs.slice(i,i+par).map(b=>decodeImage(b,224))); n+=Math.min(par,imgs.length-i); }
  const s=(performance.now()-t0)/1000; const cpu=process.cpuUsage(); console.log(label, 'par',par, (n/s).toFixed(1),'img/s');
}
const many = Array.from({length:16},(_,i)=>bigs[i%4]);
for (const conc of [sharp.concurrency(), 1]) { sharp.concurrency(conc); console.log('sharp.concurrency', sharp.concurrency(), 'UV', process.env.UV_THREADPOOL_SIZE??4);
 for (const par of [1,2,4,16]) { await rate(small, par, 'small'); await rate(many, par, '12MP '); } }
// shrink on load off
const t1=performance.now(); for (const b of bigs) await sharp(b,{failOn:'error'}).rotate().toColourspace('srgb').removeAlpha().resize(224,224,{fit:'fill',kernel:'linear', fastShrinkOnLoad:false}).raw().toBuffer(); console.log('12MP no shrink-on-load ms/img', ((performance.now()-t1)/4).toFixed(0));
const t2=performance.now(); for (const b of bigs) await decodeImage(b,224); console.log('12MP decodeImage ms/img', ((performance.now()-t2)/4).toFixed(0));
